//! The dashboard in a real terminal: tmux gives the `bntop` binary a pseudo-terminal of a chosen
//! size, sends it key presses and shows what it drew. Each test starts its own tmux server (its
//! own socket, so a user's tmux is never touched and tests run in parallel) and the pane runs
//! `bntop ...; echo "EXIT=$?"; stty -a`, so once the binary ends the pane shows its exit code and
//! the terminal modes it left behind.
//!
//! Key presses reach the training thread as controls and come back as events, so every check
//! polls the screen until the expected value appears (or a deadline passes and the test fails
//! with the last screen).
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// How long to wait for a reaction to a key press, a signal or a resize.
const DEADLINE: Duration = Duration::from_secs(20);
/// How long to wait for the first frame with data (start-up on a loaded machine is slow).
const STARTUP: Duration = Duration::from_secs(40);
const POLL: Duration = Duration::from_millis(100);
const INSTALL_HINT: &str = "tmux is required for the terminal tests: apt-get install -y tmux";

/// On a fresh machine where the tests run as root (as CI does), install tmux once, so the README's
/// test command needs no set-up of its own; anywhere else, say what is missing.
fn install_tmux_if_missing() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let present = Command::new("tmux")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success());
        let root = std::fs::metadata("/proc/self").is_ok_and(|m| {
            use std::os::unix::fs::MetadataExt;
            m.uid() == 0
        });
        if !present && root {
            let _ = Command::new("apt-get").args(["update", "-qq"]).status();
            let _ = Command::new("apt-get")
                .args(["install", "-y", "-qq", "tmux"])
                .status();
        }
    });
}

fn require_tmux() {
    install_tmux_if_missing();
    match Command::new("tmux").arg("-V").output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "{INSTALL_HINT} (`tmux -V` failed: {})",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => panic!("{INSTALL_HINT} (cannot run tmux: {e})"),
    }
}

/// Quote for a POSIX shell.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The pane's command: `bntop args`, then its exit code and the terminal modes; then the pane
/// stays open so the screen can be read. Live runs train on the digits, which learn in seconds.
fn bntop_script(args: &[&str]) -> String {
    let live = args.first() != Some(&"replay");
    // Live runs here are not about recording: keep recordings out of the source tree.
    let record = if args.contains(&"--record") || !live {
        ""
    } else {
        "--no-record"
    };
    let data = if live { "--data digits" } else { "" };
    format!(
        "{} {} {data} {record}; echo \"EXIT=$?\"; stty -a; exec sleep 600",
        shell_quote(env!("CARGO_BIN_EXE_bntop")),
        args.join(" ")
    )
}

/// One tmux server with one session holding one pane; the server is killed on drop.
struct Tmux {
    socket: String,
    session: String,
    /// The socket file, removed on drop (tmux leaves it behind).
    socket_path: Option<String>,
}

impl Tmux {
    /// Start `shell_command` (run by `sh -c`, with TERM=xterm-256color) in a detached
    /// `width`x`height` session. `name` must be unique among the tests.
    fn new(name: &str, width: u16, height: u16, shell_command: &str) -> Tmux {
        require_tmux();
        let mut tmux = Tmux {
            socket: format!("bntop-test-{}-{name}", std::process::id()),
            session: name.to_string(),
            socket_path: None,
        };
        let (w, h) = (width.to_string(), height.to_string());
        // Several arguments after the options: tmux runs them directly, no shell quoting needed.
        tmux.run(&[
            "new-session",
            "-d",
            "-s",
            name,
            "-x",
            &w,
            "-y",
            &h,
            "env",
            "TERM=xterm-256color",
            "sh",
            "-c",
            shell_command,
        ]);
        tmux.socket_path = Some(tmux.display("#{socket_path}"));
        tmux
    }

    fn command(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            // UTF-8 whatever the locale; no user configuration; our own server.
            .args(["-u", "-f", "/dev/null", "-L", &self.socket])
            .args(args)
            .env_remove("TMUX")
            .output()
            .unwrap_or_else(|e| panic!("{INSTALL_HINT} (cannot run tmux: {e})"))
    }

    /// Run a tmux command that must succeed; its stdout.
    fn run(&self, args: &[&str]) -> String {
        let out = self.command(args);
        assert!(
            out.status.success(),
            "tmux {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Key names (`j`, `Enter`, `C-c`, `Space`), one key each.
    fn send_keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", &self.session];
        args.extend_from_slice(keys);
        self.run(&args);
    }

    /// Literal text, character by character (`+`, `-`, `0.03`).
    fn type_text(&self, text: &str) {
        self.run(&["send-keys", "-t", &self.session, "-l", text]);
    }

    /// The visible screen (the alternate screen while the dashboard is up).
    fn capture(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", &self.session])
    }

    /// The normal screen with its scrollback, wrapped lines joined.
    fn capture_history(&self) -> String {
        self.run(&["capture-pane", "-p", "-J", "-S", "-", "-t", &self.session])
    }

    /// A tmux format for the pane, e.g. `#{alternate_on}`.
    fn display(&self, format: &str) -> String {
        self.run(&["display-message", "-p", "-t", &self.session, format])
            .trim()
            .to_string()
    }

    fn resize(&self, width: u16, height: u16) {
        let (w, h) = (width.to_string(), height.to_string());
        self.run(&["resize-window", "-t", &self.session, "-x", &w, "-y", &h]);
    }

    fn poll(
        &self,
        what: &str,
        deadline: Duration,
        capture: impl Fn(&Tmux) -> String,
        ready: impl Fn(&str) -> bool,
    ) -> String {
        let start = Instant::now();
        loop {
            let screen = capture(self);
            if ready(&screen) {
                return screen;
            }
            if start.elapsed() > deadline {
                panic!(
                    "timed out after {:.1} s waiting for: {what}\n--- last screen ---\n{screen}\n-------------------",
                    start.elapsed().as_secs_f64()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Poll the visible screen until `ready` holds; panic with the last screen after the deadline.
    fn wait_for(&self, ready: impl Fn(&str) -> bool, what: &str) -> String {
        self.poll(what, DEADLINE, Tmux::capture, ready)
    }

    fn wait_for_within(
        &self,
        deadline: Duration,
        ready: impl Fn(&str) -> bool,
        what: &str,
    ) -> String {
        self.poll(what, deadline, Tmux::capture, ready)
    }

    /// The first dashboard frame with all three layers in the table.
    fn wait_for_dashboard(&self) -> String {
        self.wait_for_within(
            STARTUP,
            |s| {
                ["block1", "block2", "block3"]
                    .iter()
                    .all(|b| layer(s, b).is_some())
            },
            "the layers table with block1..block3",
        )
    }

    /// The pid of `bntop`: the child of the pane's shell.
    fn bntop_pid(&self) -> u32 {
        let shell: u32 = self
            .display("#{pane_pid}")
            .parse()
            .expect("pane_pid is a number");
        let children = children_of(shell);
        match children.as_slice() {
            [(pid, comm)] if comm == "bntop" => *pid,
            _ => panic!("expected bntop as the only child of the pane shell {shell}: {children:?}"),
        }
    }

    /// After the binary ended: its exit code was `code`, the terminal is back on the main screen,
    /// in cooked mode with echo, and the cursor is shown.
    fn assert_exited_and_restored(&self, code: i32) {
        let screen = self.poll(
            &format!("EXIT={code} once bntop ends"),
            DEADLINE,
            Tmux::capture_history,
            |s| exit_code(s).is_some(),
        );
        assert_eq!(exit_code(&screen), Some(code), "exit code\n{screen}");
        assert_eq!(
            self.display("#{alternate_on}"),
            "0",
            "still on the alternate screen\n{screen}"
        );
        let screen = self.poll("the stty -a output", DEADLINE, Tmux::capture_history, |s| {
            has_flag(s, "icanon") && has_flag(s, "echo")
        });
        let modes: Vec<&str> = screen.split_whitespace().collect();
        for flag in ["icanon", "echo"] {
            assert!(
                modes.contains(&flag) && !modes.contains(&format!("-{flag}").as_str()),
                "raw mode was not left: stty shows -{flag}\n{screen}"
            );
        }
        assert_eq!(
            self.display("#{cursor_flag}"),
            "1",
            "cursor still hidden\n{screen}"
        );
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        // Ends the pane's processes too (they get SIGHUP).
        let _ = self.command(&["kill-server"]);
        if let Some(path) = &self.socket_path {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// (pid, command name) of every process whose parent is `parent` (Linux /proc).
fn children_of(parent: u32) -> Vec<(u32, String)> {
    let mut children = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split at the last ')'.
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let ppid = stat[close + 1..].split_whitespace().nth(1);
        if ppid.and_then(|p| p.parse::<u32>().ok()) == Some(parent) {
            children.push((pid, stat[open + 1..close].to_string()));
        }
    }
    children
}

fn send_signal(pid: u32, signal: &str) {
    let status = Command::new("sh")
        .args([
            "-c",
            "kill -s \"$1\" \"$2\"",
            "sh",
            signal,
            &pid.to_string(),
        ])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -s {signal} {pid} failed");
}

/// The code in the pane's `EXIT=<code>` line.
fn exit_code(screen: &str) -> Option<i32> {
    // Anywhere in a line: left in raw mode, the terminal would not return the carriage.
    screen.lines().find_map(|line| {
        let rest = &line[line.find("EXIT=")? + "EXIT=".len()..];
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        rest[..digits].parse().ok()
    })
}

/// Whether `stty -a` printed `flag`, set or cleared.
fn has_flag(screen: &str, flag: &str) -> bool {
    let cleared = format!("-{flag}");
    screen.split_whitespace().any(|w| w == flag || w == cleared)
}

/// One row of the layers table.
#[derive(Debug, PartialEq)]
struct Row {
    selected: bool,
    mode: String,
    momentum: f64,
}

/// The row for `name` ("block2"): `│▶block2  EVAL  0.200 ...`, or with `--ascii` `|>block2 ...`.
fn layer(screen: &str, name: &str) -> Option<Row> {
    screen.lines().find_map(|line| {
        let rest = line.trim_start_matches(['│', '|']);
        let (selected, rest) = match rest.strip_prefix(['▶', '>']) {
            Some(rest) => (true, rest),
            None => (false, rest),
        };
        let mut fields = rest.split_whitespace();
        if fields.next()? != name {
            return None;
        }
        let mode = fields.next()?;
        if mode != "TRAIN" && mode != "EVAL" {
            return None;
        }
        let momentum = fields.next()?.parse().ok()?;
        Some(Row {
            selected,
            mode: mode.to_string(),
            momentum,
        })
    })
}

/// Whether `name` shows `mode` and momentum `m`.
fn shows(screen: &str, name: &str, mode: &str, m: f64) -> bool {
    layer(screen, name).is_some_and(|r| r.mode == mode && (r.momentum - m).abs() < 1e-9)
}

/// The step in the header's `step N`.
fn step(screen: &str) -> Option<u64> {
    let header = screen.lines().next()?;
    let mut words = header.split_whitespace();
    words.find(|w| *w == "step")?;
    words.next()?.parse().ok()
}

fn footer(screen: &str) -> &str {
    screen.lines().last().unwrap_or("")
}

#[test]
fn keys_switch_mode_and_momentum_visible_on_screen() {
    let t = Tmux::new(
        "keys",
        120,
        40,
        &bntop_script(&["--fps", "20", "--color", "none"]),
    );
    let screen = t.wait_for_dashboard();
    for b in ["block1", "block2", "block3"] {
        assert!(
            shows(&screen, b, "TRAIN", 0.1),
            "{b} not TRAIN 0.100\n{screen}"
        );
    }
    assert!(
        layer(&screen, "block1").unwrap().selected,
        "block1 selected at start\n{screen}"
    );

    t.send_keys(&["j"]);
    t.wait_for(
        |s| layer(s, "block2").is_some_and(|r| r.selected),
        "j selects block2",
    );

    t.send_keys(&["t"]);
    t.wait_for(
        |s| {
            shows(s, "block2", "EVAL", 0.1)
                && shows(s, "block1", "TRAIN", 0.1)
                && shows(s, "block3", "TRAIN", 0.1)
        },
        "t: block2 EVAL, block1 and block3 still TRAIN",
    );

    t.type_text("+");
    t.wait_for(
        |s| {
            shows(s, "block2", "EVAL", 0.2)
                && shows(s, "block1", "TRAIN", 0.1)
                && shows(s, "block3", "TRAIN", 0.1)
        },
        "+: block2 momentum 0.200, the others unchanged",
    );

    t.send_keys(&["m"]);
    t.wait_for(
        |s| footer(s).contains("momentum for block2"),
        "m: the momentum prompt for block2 in the footer",
    );
    t.type_text("0.03");
    t.wait_for(
        |s| footer(s).contains("momentum for block2") && footer(s).contains("0.03"),
        "the prompt echoes 0.03",
    );
    t.send_keys(&["Enter"]);
    t.wait_for(
        |s| shows(s, "block2", "EVAL", 0.03) && !footer(s).contains("momentum for block2 ("),
        "Enter: block2 momentum 0.030, prompt closed",
    );

    t.send_keys(&["T"]);
    t.wait_for(
        |s| {
            shows(s, "block1", "EVAL", 0.1)
                && shows(s, "block2", "EVAL", 0.03)
                && shows(s, "block3", "EVAL", 0.1)
        },
        "T: every layer EVAL",
    );

    // q with the help open closes the help (as in htop and btop); the run goes on.
    let help = "keys (any key closes)";
    t.send_keys(&["?"]);
    t.wait_for(|s| s.contains(help), "? opens the help");
    t.send_keys(&["q"]);
    let closed = t.wait_for(|s| !s.contains(help), "q closes the help");
    let at = step(&closed).unwrap_or_else(|| panic!("q ended the run\n{closed}"));
    t.wait_for(
        |s| step(s).is_some_and(|now| now > at),
        "training goes on after q closed the help",
    );

    t.send_keys(&["q"]);
    t.assert_exited_and_restored(0);
}

/// The measured and predicted numbers of a lab-panel row ("quantity: [bar] measured vs predicted").
fn lab_row(screen: &str, quantity: &str) -> Option<(f64, Option<f64>)> {
    let line = screen.lines().find(|l| l.contains(quantity))?;
    let (_, values) = line.split_once(&format!("{quantity}:"))?;
    let mut numbers = values
        .split_whitespace()
        .filter(|w| *w != "vs")
        .map(|w| w.trim_end_matches('│').parse::<f64>());
    let measured = numbers.find_map(Result::ok)?;
    Some((measured, numbers.find_map(Result::ok)))
}

#[test]
fn lab_keys_run_the_probe_and_precise_bn_and_apply_it() {
    let t = Tmux::new(
        "lab",
        160,
        48,
        &bntop_script(&["--fps", "20", "--color", "none", "--lab-every", "0"]),
    );
    t.wait_for_dashboard();
    t.send_keys(&["j", "j", "Tab"]);
    let screen = t.wait_for(|s| s.contains("block3 lab"), "Tab: block3's lab panel");
    assert!(
        !screen.contains("probe ∇b") && !screen.contains("σ²_B/σ²_pop"),
        "--lab-every 0: nothing before asked\n{screen}"
    );

    t.send_keys(&["b"]);
    let screen = t.wait_for(|s| s.contains("probe ∇b, eval mode"), "b: the probe's bars");
    let (train, predicted) = lab_row(&screen, "probe ∇b, train mode").expect("train bar");
    assert!(train < 1e-5 && predicted == Some(0.0), "{screen}");
    for bar in ["probe ∇b, stop-gradient", "probe ∇b, eval mode"] {
        let (measured, predicted) = lab_row(&screen, bar).expect("bar");
        let predicted = predicted.expect("prediction");
        assert!(
            measured > 100.0 * train && (measured / predicted - 1.0).abs() < 0.01,
            "{bar}: {measured} vs {predicted}\n{screen}"
        );
    }

    t.send_keys(&["P"]);
    let screen = t.wait_for(
        |s| s.contains("σ²_B/σ²_pop") && s.contains("Precise") && s.contains("acc EMA vs"),
        "P: PreciseBN row, three-way evaluation in the lab and the header",
    );
    let (ratio, predicted) = lab_row(&screen, "batch var σ²_B/σ²_pop").expect("ratio row");
    assert!(
        ratio > 0.8 && ratio < 1.05 && predicted.is_some(),
        "shuffled batches: {ratio}\n{screen}"
    );

    t.send_keys(&["A"]);
    t.wait_for(
        |s| s.contains("EMA var/σ²_pop 1.00"),
        "A: the running variance is the population's",
    );
    t.send_keys(&["q"]);
    t.assert_exited_and_restored(0);
}

/// Start the dashboard, send `signal` to bntop with kill, expect exit code `code` and the
/// terminal restored.
/// The dashboard gets `signal`: the terminal is restored, the exit code is 128 + signal, and
/// the recording is closed with the run's end record (as after a dropped ssh connection).
fn terminal_restored_after(name: &str, signal: &str, code: i32) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("run.jsonl");
    let file_arg = shell_quote(&file.display().to_string());
    let t = Tmux::new(
        name,
        100,
        30,
        &bntop_script(&["--fps", "20", "--color", "none", "--record", &file_arg]),
    );
    t.wait_for_dashboard();
    assert_eq!(
        t.display("#{alternate_on}"),
        "1",
        "dashboard on the alternate screen"
    );
    let pid = t.bntop_pid();
    send_signal(pid, signal);
    t.assert_exited_and_restored(code);
    let recorded = std::fs::read_to_string(&file).expect("the recording");
    let last = recorded.lines().last().unwrap_or_default();
    assert!(
        last.contains("\"kind\":\"end\""),
        "the recording ends with: {last}"
    );
}

#[test]
fn terminal_restored_after_sigterm() {
    terminal_restored_after("sigterm", "TERM", 143);
}

#[test]
fn terminal_restored_after_sigint() {
    terminal_restored_after("sigint", "INT", 130);
}

#[test]
fn terminal_restored_after_sighup() {
    terminal_restored_after("sighup", "HUP", 129);
}

#[test]
fn ctrl_c_key_quits_with_exit_0() {
    let t = Tmux::new(
        "ctrlc",
        100,
        30,
        &bntop_script(&["--fps", "20", "--color", "none"]),
    );
    t.wait_for_dashboard();
    t.send_keys(&["C-c"]);
    t.assert_exited_and_restored(0);
}

#[test]
fn ascii_mode_draws_only_ascii() {
    let t = Tmux::new(
        "ascii",
        80,
        24,
        &bntop_script(&["--fps", "20", "--ascii", "--color", "none"]),
    );
    t.wait_for_dashboard();
    // Wait until the charts carry some history, not just their first points.
    let screen = t.wait_for(
        |s| s.contains("held-out batch") && step(s).is_some_and(|n| n >= 100),
        "step 100 and a held-out evaluation in the header",
    );
    assert!(
        layer(&screen, "block1").is_some_and(|r| r.selected) && screen.contains("|>block1"),
        "the selected row is marked with '>'\n{screen}"
    );
    let foreign: Vec<String> = screen
        .lines()
        .enumerate()
        .flat_map(|(row, line)| {
            line.chars()
                .enumerate()
                .filter(|(_, c)| !c.is_ascii())
                .map(move |(col, c)| format!("{c:?} (U+{:04X}) at row {row} col {col}", c as u32))
        })
        .collect();
    assert!(
        foreign.is_empty(),
        "{} non-ASCII characters with --ascii, the first: {:?}\n{screen}",
        foreign.len(),
        &foreign[..foreign.len().min(10)]
    );
}

#[test]
fn small_and_resized_terminal() {
    let t = Tmux::new(
        "small",
        30,
        8,
        &bntop_script(&["--fps", "20", "--color", "none"]),
    );
    t.wait_for_within(
        STARTUP,
        |s| s.contains("terminal too small"),
        "\"terminal too small\" at 30x8",
    );
    t.resize(120, 40);
    assert_eq!(t.display("#{window_width}x#{window_height}"), "120x40");
    t.wait_for_within(
        STARTUP,
        |s| {
            !s.contains("terminal too small")
                && ["block1", "block2", "block3"]
                    .iter()
                    .all(|b| layer(s, b).is_some())
        },
        "the layers table after resizing to 120x40",
    );
    t.send_keys(&["q"]);
    t.assert_exited_and_restored(0);
}

/// A live run recorded with `--record`, `w` pausing and resuming the recording, then the same
/// file replayed in the dashboard: jump to the end and back to the start.
#[test]
fn record_then_replay_the_session() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("run.jsonl");
    let file_arg = shell_quote(&file.display().to_string());
    let t = Tmux::new(
        "record",
        150,
        40,
        &bntop_script(&[
            "--fps", "20", "--color", "none", "--steps", "300", "--record", &file_arg,
        ]),
    );
    t.wait_for_dashboard();
    t.wait_for(|s| s.contains("● REC"), "the recording indicator");
    t.send_keys(&["w"]);
    t.wait_for(|s| s.contains("REC paused"), "recording paused");
    t.send_keys(&["w"]);
    t.wait_for(|s| s.contains("● REC"), "recording resumed");
    t.wait_for_within(STARTUP, |s| s.contains("FINISHED"), "the run to finish");
    t.send_keys(&["q"]);
    t.assert_exited_and_restored(0);

    let r = Tmux::new(
        "replay",
        150,
        40,
        &bntop_script(&["replay", &file_arg, "--fps", "20", "--color", "none"]),
    );
    r.wait_for(|s| s.contains("REPLAY"), "the replay header");
    r.send_keys(&["G"]);
    r.wait_for(|s| s.contains("step 300/300"), "the end of the recording");
    r.wait_for(|s| s.contains("FINISHED"), "the recorded end");
    r.send_keys(&["g"]);
    r.wait_for(|s| !s.contains("FINISHED"), "back at the start");
    r.send_keys(&["q"]);
    r.assert_exited_and_restored(0);
}

/// A shipped recording (format 1.5, per-channel arrays every 0.12 s) replayed as a person
/// would: seek into the m = 0.01 phase, select block3; its row shows D with D0 in brackets
/// (published by the engine: the file never has two successive whole steps), and the lab panel
/// its running-mean lag and noise.
#[test]
fn a_replayed_recording_shows_d0_and_the_ema_rows() {
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/sessions/momentum-lag-vs-noise.jsonl"
    );
    let t = Tmux::new(
        "published",
        160,
        48,
        &bntop_script(&["replay", &shell_quote(file), "--color", "none"]),
    );
    t.wait_for(|s| s.contains("REPLAY"), "the replay header");
    t.send_keys(&["p", ":"]);
    t.type_text("2600");
    t.send_keys(&["Enter"]);
    t.wait_for(|s| s.contains("step 2600/6000"), "the seek");
    t.send_keys(&["j", "j"]);
    let with_floor = |s: &str| {
        s.lines().any(|line| {
            let mut words = line.trim_start_matches(['│', '▶']).split_whitespace();
            words.next() == Some("block3")
                && words.nth(2).is_some_and(|d| d.parse::<f64>().is_ok())
                && words.next().is_some_and(|d0| {
                    d0.strip_prefix('(')
                        .and_then(|d0| d0.strip_suffix(')'))
                        .is_some_and(|d0| d0.parse::<f64>().is_ok_and(|x| x > 0.0))
                })
        })
    };
    t.wait_for(
        |s| with_floor(s) && s.contains("▶block3"),
        "block3's D (D0)",
    );
    t.send_keys(&["Tab"]);
    // The rows are in the wait, not asserted after it: a capture can land mid-redraw, with the
    // panel's title written and its rows not yet.
    let rows = ["running-mean lag", "running-mean noise", "Ξ = (D/D0)²"];
    t.wait_for(
        |s| s.contains("block3 lab") && rows.iter().all(|r| s.contains(r)),
        "the lab panel with its drift rows",
    );
    t.send_keys(&["q"]);
    t.assert_exited_and_restored(0);
}

/// The README's tour of the stale-running-statistics recording, key by key: at the end the
/// held-out chart carries the momentum marker; paused at step 1500 the header has the EMA 25
/// points under batch statistics and PreciseBN, block3's row D 0.10 over D0 0.026, and the lab
/// panel its angular update against θ*; `n` finds the switch to m = 0.5.
#[test]
fn the_readme_tour_of_the_stale_running_stats_recording_shows_its_numbers() {
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/sessions/stale-running-stats-mnist.jsonl"
    );
    let t = Tmux::new(
        "stale",
        120,
        40,
        &bntop_script(&["replay", &shell_quote(file), "--color", "none"]),
    );
    t.wait_for(|s| s.contains("REPLAY"), "the replay header");
    t.send_keys(&["G", "Z"]);
    t.type_text("300..2500");
    t.send_keys(&["Enter", "j", "j"]);
    t.wait_for(
        |s| s.contains("step 2500/2500") && s.contains("markers: m momentum"),
        "the end, with the momentum marker",
    );
    t.send_keys(&["p", ":"]);
    t.type_text("1500");
    t.send_keys(&["Enter"]);
    let at_1500 = t.wait_for(
        |s| s.contains("⏸") && s.contains("step 1500/2500"),
        "paused at step 1500",
    );
    assert!(
        at_1500.contains("held-out batch 94.6% EMA 69.4% Precise 95.4%"),
        "{at_1500}"
    );
    for (layer, d) in [
        ("block1", "0.048 (0.018)"),
        ("block2", "0.085 (0.023)"),
        ("block3", "0.10 (0.026)"),
    ] {
        assert!(
            at_1500.lines().any(|l| l.contains(layer) && l.contains(d)),
            "{layer} {d}\n{at_1500}"
        );
    }
    t.send_keys(&["Tab"]);
    let rows = [
        "drift D vs floor D0: 0.102 vs 0.0260",
        "angular update (rad/step): 0.00496 vs",
        "0.00513",
    ];
    t.wait_for(
        |s| s.contains("block3 lab") && rows.iter().all(|r| s.contains(r)),
        "the lab panel with the recorded step's numbers",
    );
    t.send_keys(&["n"]);
    t.wait_for(
        |s| s.contains("step 1539: all layers momentum = 0.500"),
        "the switch",
    );
    t.send_keys(&["q"]);
    t.assert_exited_and_restored(0);
}

/// Garbage in a session: the replay shows the good records, counts the bad lines in its header
/// and on stderr after it closes; a file that is not a session at all is a one-line error.
#[test]
fn replay_counts_bad_lines_and_refuses_newer_formats() {
    use std::io::Write;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("damaged.jsonl");
    let mut f = std::fs::File::create(&file).expect("create");
    let events = bntop::ui::synthetic::run(200, 3);
    for (i, e) in events.iter().enumerate() {
        writeln!(f, "{}", serde_json::to_string(e).expect("json")).expect("write");
        if i == 50 {
            f.write_all(b"this is not json\n\xff\xfe binary junk\n")
                .expect("write");
        }
    }
    drop(f);
    let file_arg = shell_quote(&file.display().to_string());
    let t = Tmux::new(
        "damaged",
        150,
        40,
        &bntop_script(&["replay", &file_arg, "--color", "none"]),
    );
    t.wait_for(
        |s| s.contains("skipped 2 bad lines"),
        "the skipped-lines count",
    );
    t.send_keys(&["G"]);
    t.wait_for(|s| s.contains("step 200/200"), "the last good record");
    t.send_keys(&["q"]);
    t.assert_exited_and_restored(0);
    let history = t.capture_history();
    assert!(history.contains("skipped 2 bad lines"), "{history}");

    let newer = dir.path().join("newer.jsonl");
    let header = serde_json::to_string(&events[0])
        .expect("json")
        .replace("\"version_major\":1", "\"version_major\":2");
    std::fs::write(&newer, header + "\n").expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bntop"))
        .args(["replay", &newer.display().to_string()])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("newer") && err.lines().count() == 1, "{err}");
}

/// A recording from an external producer (bntop-torch's header, ResNet-18's 20 BN layers, two
/// ranks), written here from the synthetic stream and replayed by the real binary in a 100x30
/// terminal: the header names the producer, the table scrolls with `j` and says which rows show,
/// `S` sorts, `v` shows the D/D0 map, and the selected layer's per-rank drift is in view.
#[test]
fn replay_a_resnet18_recording_from_an_external_producer() {
    use bntop::ui::synthetic::{self, NetworkRun};
    use std::io::Write;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("resnet18.jsonl");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&file).expect("create"));
    let header = synthetic::producer_header(synthetic::resnet18_layers(), 2);
    for e in NetworkRun::new(header, 300, 5) {
        writeln!(f, "{}", serde_json::to_string(&e).expect("json")).expect("write");
    }
    f.flush().expect("flush");
    drop(f);
    let file_arg = shell_quote(&file.display().to_string());
    let t = Tmux::new(
        "resnet18",
        100,
        30,
        &bntop_script(&["replay", &file_arg, "--fps", "20", "--color", "none"]),
    );
    t.wait_for(
        |s| s.contains("REPLAY") && s.contains("bntop-torch 0.1.0") && s.contains("ranks 2"),
        "the producer in the header",
    );
    // Played through (2 s of run time), so the history holds every step.
    t.wait_for(|s| s.contains("step 300/300"), "the end of the recording");
    let top = t.wait_for(
        |s| layer(s, "bn1").is_some_and(|r| r.selected) && s.contains(" of 20 "),
        "bn1 selected, the rows shown out of 20",
    );
    assert!(layer(&top, "layer4.1.bn2").is_none(), "{top}");
    assert!(top.contains("bn1 D per rank"), "{top}");
    t.send_keys(&["j"; 19]);
    let bottom = t.wait_for(
        |s| layer(s, "layer4.1.bn2").is_some_and(|r| r.selected) && s.contains("-20 of 20"),
        "the last layer selected and in view",
    );
    assert!(layer(&bottom, "bn1").is_none(), "{bottom}");
    assert!(bottom.contains("layer4.1.bn2 D per rank"), "{bottom}");
    t.send_keys(&["S"]);
    t.wait_for(|s| s.contains("by worst drift"), "sorted by worst drift");
    t.send_keys(&["S"]);
    t.wait_for(|s| s.contains("BN layers by name"), "sorted by name");
    t.send_keys(&["v"]);
    // Wait for the whole frame, not just its title: a capture can land while the rows below the
    // map's title are still being written.
    t.wait_for(
        |s| s.contains("D/D0 by step") && map_cells(s, "layer4.1.bn2") >= 20,
        "the D/D0 map with the selected layer's row of cells",
    );
    t.send_keys(&["q"]);
    t.assert_exited_and_restored(0);
}

/// How many D/D0 map cells (glyphs past the table's last bracket) the row of `name` shows.
fn map_cells(screen: &str, name: &str) -> usize {
    let Some(row) = screen.lines().find(|l| l.contains(name)) else {
        return 0;
    };
    let cells = row.rsplit(')').next().unwrap_or("");
    cells.chars().filter(|c| ".:-+*#".contains(*c)).count()
}

/// The number after `prefix` in the footer ("step 37: save checkpoint" -> 37 for "step ").
fn footer_number(screen: &str, prefix: &str) -> Option<u64> {
    let (_, rest) = footer(screen).split_once(prefix)?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// K saves, some steps, U goes back to the saved step; ! asks, y restarts from step 0.
#[test]
fn checkpoint_keys_send_the_run_back() {
    let t = Tmux::new(
        "checkpoints",
        120,
        40,
        &bntop_script(&["--fps", "20", "--color", "none"]),
    );
    t.wait_for_dashboard();
    t.send_keys(&["K"]);
    let saved = t.wait_for(
        |s| footer(s).contains(": save checkpoint") && footer_number(s, "step ").is_some(),
        "K: the engine's echo of the save in the footer",
    );
    let at = footer_number(&saved, "step ").unwrap_or_default();
    t.wait_for(
        |s| step(s).is_some_and(|now| now > at + 100),
        "a hundred steps after the save",
    );
    t.send_keys(&["Space"]);
    // The pause is echoed after the last step's snapshot: the step shown is where training stopped.
    let paused = t.wait_for(|s| s.contains("PAUSED"), "space pauses");
    let reached = step(&paused).unwrap_or_default();
    assert!(reached > at + 100, "{paused}");
    t.send_keys(&["U"]);
    let restored = t.wait_for(
        |s| footer(s).contains("restored checkpoint") && step(s) == Some(at),
        "U: the run back at the saved step",
    );
    assert_eq!(
        footer_number(&restored, "run was at step "),
        Some(reached),
        "{restored}"
    );
    eprintln!("--- after U ---\n{restored}");
    t.send_keys(&["!"]);
    t.wait_for(
        |s| footer(s).contains("restart from step 0? y/n"),
        "!: asks before restarting",
    );
    t.send_keys(&["n"]);
    t.wait_for(
        |s| footer(s).contains("restart cancelled") && step(s) == Some(at),
        "n: nothing restarted",
    );
    t.send_keys(&["!"]);
    t.wait_for(|s| footer(s).contains("y/n"), "! asks again");
    t.send_keys(&["y"]);
    t.wait_for(
        |s| footer(s).contains("restarted from step 0") && step(s) == Some(0),
        "y: the run back at step 0",
    );
    t.send_keys(&["Space"]);
    t.wait_for(
        |s| step(s).is_some_and(|now| now > 10),
        "training goes on from step 0",
    );
    t.send_keys(&["q"]);
    t.assert_exited_and_restored(0);
}

/// The cursor's text in a screen: "step 10,436: ..." up to the border.
fn cursor_text(screen: &str) -> Option<String> {
    let line = screen
        .lines()
        .find(|l| l.contains("step ") && l.contains(": train"))?;
    let from = line.find("step ")?;
    Some(
        line[from..]
            .split('─')
            .next()
            .unwrap_or("")
            .trim()
            .to_string(),
    )
}

/// A shipped recording read as a person would: the finished run is drawn to its last step, `z`
/// zooms to the last 1k steps, `x` turns the cursor on, `{` and `>` move it and its values change,
/// and `n` from the start jumps straight to the one control (not the 88 epoch markers before it).
#[test]
fn replay_window_cursor_and_control_jumps() {
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/sessions/eval-mode-phantom-gradient.jsonl"
    );
    let t = Tmux::new(
        "charts",
        160,
        48,
        &bntop_script(&[
            "replay",
            &shell_quote(file),
            "--fps",
            "20",
            "--color",
            "none",
        ]),
    );
    t.wait_for(|s| s.contains("REPLAY"), "the replay header");
    t.send_keys(&["G"]);
    let end = t.wait_for(|s| s.contains("step 10536/10536"), "the recorded end");
    // 10,536 steps: ticks to 10k, no empty half up to 20k.
    assert!(end.contains(" 10k") && !end.contains("20k"), "{end}");
    t.send_keys(&["z"]);
    t.wait_for(|s| s.contains(" last 1k "), "the last-1k window");
    t.send_keys(&["x"]);
    t.wait_for(
        |s| cursor_text(s).is_some_and(|c| c.starts_with("step 10,536:")),
        "the cursor at the last step",
    );
    t.send_keys(&["{"]);
    let before = t.wait_for(
        |s| cursor_text(s).is_some_and(|c| c.starts_with("step 10,436:")),
        "the cursor a tenth of the window back",
    );
    let before = cursor_text(&before).unwrap_or_default();
    t.send_keys(&[">"]);
    let after = t.wait_for(
        |s| cursor_text(s).is_some_and(|c| c != before),
        "the cursor one dot column on",
    );
    let after = cursor_text(&after).unwrap_or_default();
    assert!(
        after.starts_with("step 10,4") && after > before,
        "{before} -> {after}"
    );
    t.send_keys(&["g"]);
    t.wait_for(|s| !s.contains("STOPPED"), "back at the start");
    // Paused, so the header stays at the step jumped to.
    t.send_keys(&["Space"]);
    t.wait_for(|s| s.contains("REPLAY ⏸"), "the replay paused");
    t.send_keys(&["n"]);
    let jumped = t.wait_for(|s| s.contains("step 1937/"), "the jump to the EVAL switch");
    assert!(
        footer(&jumped).contains("step 1937: block2 -> EVAL"),
        "{jumped}"
    );
    t.send_keys(&["e"]);
    t.wait_for(|s| s.contains("step 1958/"), "the next epoch marker");
    t.send_keys(&["q"]);
    t.assert_exited_and_restored(0);
}

/// `--mouse`: a click in a chart (an SGR mouse report, as a terminal sends it) puts the step
/// cursor there; quitting turns mouse reporting off again.
#[test]
fn mouse_click_sets_the_cursor_and_quitting_releases_the_mouse() {
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/sessions/healthy-convergence.jsonl"
    );
    let t = Tmux::new(
        "mouse",
        160,
        48,
        &bntop_script(&["replay", &shell_quote(file), "--mouse", "--color", "none"]),
    );
    t.wait_for(|s| s.contains("REPLAY"), "the replay header");
    assert_eq!(t.display("#{mouse_sgr_flag}"), "1", "mouse reporting on");
    t.send_keys(&["G"]);
    t.wait_for(|s| s.contains("step 6000/6000"), "the end of the recording");
    // Column 20, row 16 (1-based): inside the first chart, below the layers table.
    t.type_text("\x1b[<0;20;16M\x1b[<0;20;16m");
    let screen = t.wait_for(
        |s| footer(s).starts_with("cursor at step "),
        "the cursor set by the click",
    );
    assert!(screen.contains(": batch "), "{screen}");
    t.send_keys(&["q"]);
    t.assert_exited_and_restored(0);
    assert_eq!(t.display("#{mouse_sgr_flag}"), "0", "mouse reporting off");
}

/// The D column and run B's column beside it in the row of `name`: `│ block3  TRAIN 0.100
/// 0.12 (0.11)  0.15 ...` (D0 in brackets where it is known).
fn drift_and_b(screen: &str, name: &str) -> Option<(f64, f64)> {
    let line = screen.lines().find(|l| {
        let rest = l.trim_start_matches('│').trim_start_matches('▶');
        rest.split_whitespace().next() == Some(name)
    })?;
    let fields: Vec<&str> = line.split_whitespace().collect();
    let at = fields.iter().position(|f| f.ends_with(name))?;
    let d = fields.get(at + 3)?.parse().ok()?;
    let after = if fields.get(at + 4)?.starts_with('(') {
        at + 5
    } else {
        at + 4
    };
    Some((d, fields.get(after)?.parse().ok()?))
}

/// Two shipped recordings compared as a person would: the header names run A and run B, every
/// time chart has B's legend, the table shows B's D beside A's; `B` switches it to A−B (which
/// is A's D minus B's), then off; q quits cleanly.
#[test]
fn replay_compared_with_another_recording_and_b_cycles_the_table() {
    let session = |name: &str| {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("sessions")
            .join(name);
        shell_quote(&path.display().to_string())
    };
    let (a, b) = (
        session("healthy-convergence.jsonl"),
        session("momentum-lag-vs-noise.jsonl"),
    );
    let t = Tmux::new(
        "compare",
        160,
        48,
        &bntop_script(&["replay", &a, "--compare", &b, "--fps", "20"]),
    );
    let screen = t.wait_for_within(
        STARTUP,
        |s| s.contains("REPLAY") && drift_and_b(s, "block3").is_some(),
        "the replay with run B's column",
    );
    assert!(
        screen.contains("A ━ healthy-convergence.jsonl B ┄ momentum-lag-vs-noise.jsonl"),
        "{screen}"
    );
    assert!(
        screen.contains("B D") && screen.contains("B ‖w‖"),
        "{screen}"
    );
    assert!(!screen.contains("shares"), "the same model: {screen}");
    // The end of A (step 6000, paused there), where B runs at m = 0.5 in block3.
    t.send_keys(&["G", "Space"]);
    let screen = t.wait_for(
        |s| s.contains("step 6000/6000") && s.contains("FINISHED"),
        "the end of run A",
    );
    assert!(
        screen.matches("┄ B").count() >= 4,
        "ghost legends\n{screen}"
    );
    let Some((d, b_d)) = drift_and_b(&screen, "block3") else {
        panic!("block3's D and B's D\n{screen}")
    };
    t.send_keys(&["B"]);
    let screen = t.wait_for(
        |s| s.contains("ΔD") && footer(s).contains("difference A−B"),
        "the difference columns",
    );
    let Some((d_again, difference)) = drift_and_b(&screen, "block3") else {
        panic!("block3's ΔD\n{screen}")
    };
    assert_eq!(d_again, d, "A's D is unchanged");
    // Both shown to 2 significant digits: their difference to about 1% of the larger.
    let tolerance = 0.011 * d.abs().max(b_d.abs());
    assert!(
        (difference - (d - b_d)).abs() <= tolerance,
        "ΔD {difference} = D {d} - B's D {b_d}\n{screen}"
    );
    t.send_keys(&["B"]);
    t.wait_for(
        |s| !s.contains("ΔD") && !s.contains("B D") && s.contains("┄ B"),
        "no B columns, ghosts still drawn",
    );
    t.send_keys(&["q"]);
    t.assert_exited_and_restored(0);
}
