//! The ssh command `attach ssh://` runs: `ssh` by default, or what `--ssh` / `BNTOP_SSH` say
//! (`"ssh -i ~/.ssh/lab -p 2222"`, like rsync's `-e`), split into words the way a POSIX shell
//! splits them, without running a shell: no expansion, no substitution, no globbing. The words
//! go to the ssh process as its arguments, before bntop's own `-T -- destination command`.

/// The default: the `ssh` on the PATH, no options.
pub const DEFAULT: &str = "ssh";

/// The program and its options, split from `--ssh`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SshCommand {
    pub program: String,
    pub options: Vec<String>,
}

impl Default for SshCommand {
    fn default() -> SshCommand {
        SshCommand {
            program: DEFAULT.into(),
            options: Vec::new(),
        }
    }
}

impl SshCommand {
    /// `text` split like a shell line; an empty one, or one with an unclosed quote, is an error.
    pub fn parse(text: &str) -> Result<SshCommand, String> {
        let mut words = split_words(text)
            .map_err(|e| format!("--ssh {text:?}: {e}"))?
            .into_iter();
        let program = words
            .next()
            .ok_or_else(|| "--ssh: empty; give a command such as \"ssh -p 2222\"".to_string())?;
        Ok(SshCommand {
            program,
            options: words.collect(),
        })
    }
}

/// Words as a POSIX shell splits them: blanks separate, '…' is literal, "…" is literal but for
/// `\"`, `\\`, `\$` and `` \` ``, and a backslash outside quotes takes the next character as is.
/// `$`, `~`, `*` and the rest are plain characters: nothing is expanded.
pub fn split_words(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' => words.extend(word.take()),
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => w.push(c),
                        None => return Err("unclosed single quote".into()),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => w.push(c),
                            Some(c) => {
                                w.push('\\');
                                w.push(c);
                            }
                            None => return Err("unclosed double quote".into()),
                        },
                        Some(c) => w.push(c),
                        None => return Err("unclosed double quote".into()),
                    }
                }
            }
            '\\' => match chars.next() {
                Some(c) => word.get_or_insert_with(String::new).push(c),
                None => return Err("a backslash at the end".into()),
            },
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        split_words(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn options_split_like_a_shell_without_expanding() {
        assert_eq!(
            words("ssh -i key -p 2222"),
            ["ssh", "-i", "key", "-p", "2222"]
        );
        assert_eq!(words("  ssh\t-v  "), ["ssh", "-v"]);
        assert_eq!(
            words(r#"ssh -i "/keys/my lab key" -o 'ProxyJump=a b'"#),
            ["ssh", "-i", "/keys/my lab key", "-o", "ProxyJump=a b"]
        );
        assert_eq!(words(r"ssh -i my\ key"), ["ssh", "-i", "my key"]);
        assert_eq!(words(r#"a"b"'c'd"#), ["abcd"]);
        assert_eq!(words(r#""say \"hi\" \$x \n""#), [r#"say "hi" $x \n"#]);
        assert_eq!(words("''"), [""], "an empty quoted word is a word");
        // Nothing a shell would expand is: the words reach ssh as written.
        assert_eq!(
            words("ssh $HOME ~/k `id` $(id) *;rm"),
            ["ssh", "$HOME", "~/k", "`id`", "$(id)", "*;rm"]
        );
        assert!(words("").is_empty());
        for bad in ["ssh 'open", "ssh \"open", "ssh \\"] {
            assert!(split_words(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_first_word_is_the_program() {
        assert_eq!(
            SshCommand::parse("/opt/bin/ssh -p 2222").ok(),
            Some(SshCommand {
                program: "/opt/bin/ssh".into(),
                options: vec!["-p".into(), "2222".into()],
            })
        );
        assert_eq!(SshCommand::parse("ssh").ok(), Some(SshCommand::default()));
        assert!(SshCommand::parse("   ").is_err());
        assert!(SshCommand::parse("ssh -i 'x").is_err());
    }
}
