//! The Unix socket's safety on a shared machine: the directory it lives in (nobody else may
//! replace the socket), its mode from the moment it exists, and who is on the other end.
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::os::unix::io::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

/// This process's user.
pub fn my_uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

/// What decides whether a directory may hold our socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirFacts {
    pub is_symlink: bool,
    pub is_dir: bool,
    pub uid: u32,
    /// Permission bits, with the sticky bit (0o1000).
    pub mode: u32,
}

impl DirFacts {
    /// The directory itself, not what a symlink points to.
    fn of(dir: &Path) -> io::Result<DirFacts> {
        let meta = std::fs::symlink_metadata(dir)?;
        Ok(DirFacts {
            is_symlink: meta.file_type().is_symlink(),
            is_dir: meta.is_dir(),
            uid: meta.uid(),
            mode: meta.mode() & 0o7777,
        })
    }
}

/// Whether user `me` may put its socket in a directory like `facts`. A private directory (the
/// default socket's) must be a real directory of ours that nobody else can even enter. A directory
/// named with `--socket` must be ours or root's, and if others may write to it, sticky (as /tmp
/// is), so they cannot rename or delete our socket.
pub fn judge_dir(facts: &DirFacts, me: u32, private: bool) -> Result<(), String> {
    if facts.is_symlink {
        return Err("it is a symbolic link".into());
    }
    if !facts.is_dir {
        return Err("it is not a directory".into());
    }
    if private {
        if facts.uid != me {
            return Err(format!(
                "it belongs to uid {}, not to you ({me})",
                facts.uid
            ));
        }
        if facts.mode & 0o077 != 0 {
            return Err(format!(
                "others have access to it (mode {:o}; it must be 700)",
                facts.mode & 0o777
            ));
        }
        return Ok(());
    }
    if facts.uid != me && facts.uid != 0 {
        return Err(format!(
            "it belongs to uid {}, neither you ({me}) nor root",
            facts.uid
        ));
    }
    if facts.mode & 0o022 != 0 && facts.mode & 0o1000 == 0 {
        return Err(format!(
            "others may write to it and it is not sticky (mode {:o})",
            facts.mode & 0o7777
        ));
    }
    Ok(())
}

/// Make sure `dir` may hold our socket: create it (mode 0700 from the start) if it is missing,
/// then check it with [`judge_dir`] (`private` for the default socket's directory).
pub fn prepare_dir(dir: &Path, private: bool) -> Result<(), String> {
    let shown = dir.display();
    if std::fs::symlink_metadata(dir).is_err() {
        let created = std::fs::DirBuilder::new()
            .recursive(!private)
            .mode(0o700)
            .create(dir);
        // Someone may have created it just now: the check below decides.
        if let Err(e) = created.as_ref() {
            if e.kind() != io::ErrorKind::AlreadyExists {
                return Err(format!("cannot create the socket directory {shown}: {e}"));
            }
        }
    }
    let facts = DirFacts::of(dir).map_err(|e| format!("cannot inspect {shown}: {e}"))?;
    judge_dir(&facts, my_uid(), private).map_err(|why| {
        format!("refusing the socket directory {shown}: {why}; another user could take over the socket (fix or remove it, or use --socket)")
    })
}

/// Bind a Unix socket that is mode 0600 from the moment it exists: the umask is 0177 around the
/// bind (the umask is per process; nothing else of ours creates files at this moment).
pub fn bind_private(path: &Path) -> io::Result<UnixListener> {
    // SAFETY: umask has no preconditions and cannot fail.
    let previous = unsafe { libc::umask(0o177) };
    let bound = UnixListener::bind(path);
    // SAFETY: as above.
    unsafe { libc::umask(previous) };
    bound
}

/// The user id of the process on the other end of a Unix socket (SO_PEERCRED).
pub fn peer_uid(stream: &UnixStream) -> io::Result<u32> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: the fd is a live socket; cred and len are valid for writes of the sizes given.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cred.uid)
}

/// A server we may talk to: one of our own, or root's.
pub fn trusted_server(server: u32, me: u32) -> bool {
    server == me || server == 0
}

/// Refuse a server run by another user (it could be anyone's socket at that path) before
/// anything is sent to it.
pub fn check_server(stream: &UnixStream, socket: &Path, me: u32) -> Result<(), String> {
    let shown = socket.display();
    let server =
        peer_uid(stream).map_err(|e| format!("cannot tell who runs the server on {shown}: {e}"))?;
    if trusted_server(server, me) {
        Ok(())
    } else {
        Err(format!(
            "the server on {shown} runs as uid {server}, neither you ({me}) nor root: not talking to it"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn dir(uid: u32, mode: u32) -> DirFacts {
        DirFacts {
            is_symlink: false,
            is_dir: true,
            uid,
            mode,
        }
    }

    #[test]
    fn a_private_directory_is_ours_alone() {
        assert_eq!(judge_dir(&dir(1000, 0o700), 1000, true), Ok(()));
        assert!(judge_dir(&dir(1001, 0o700), 1000, true).is_err());
        assert!(judge_dir(&dir(0, 0o700), 1000, true).is_err());
        for mode in [0o777, 0o770, 0o750, 0o705, 0o710, 0o1777] {
            assert!(judge_dir(&dir(1000, mode), 1000, true).is_err(), "{mode:o}");
        }
        let link = DirFacts {
            is_symlink: true,
            ..dir(1000, 0o700)
        };
        assert!(judge_dir(&link, 1000, true).is_err());
        let file = DirFacts {
            is_dir: false,
            ..dir(1000, 0o600)
        };
        assert!(judge_dir(&file, 1000, true).is_err());
    }

    #[test]
    fn a_named_directory_may_be_shared_if_nobody_else_can_replace_the_socket() {
        // /tmp: root's, world-writable but sticky.
        assert_eq!(judge_dir(&dir(0, 0o1777), 1000, false), Ok(()));
        assert_eq!(judge_dir(&dir(1000, 0o755), 1000, false), Ok(()));
        assert_eq!(judge_dir(&dir(1000, 0o1777), 1000, false), Ok(()));
        assert!(judge_dir(&dir(0, 0o777), 1000, false).is_err());
        assert!(judge_dir(&dir(1000, 0o770), 1000, false).is_err());
        assert!(judge_dir(&dir(1001, 0o700), 1000, false).is_err());
        assert!(judge_dir(&dir(1001, 0o1777), 1000, false).is_err());
    }

    #[test]
    fn created_directories_are_private_and_checked() {
        let base = tempfile::tempdir().expect("tempdir");
        let fresh = base.path().join("fresh");
        assert_eq!(prepare_dir(&fresh, true), Ok(()));
        let mode = std::fs::metadata(&fresh)
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        let open = base.path().join("open");
        std::fs::create_dir(&open).expect("mkdir");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        assert!(prepare_dir(&open, true).is_err());
        assert!(prepare_dir(&open, false).is_err());
        let link = base.path().join("link");
        std::os::unix::fs::symlink(&fresh, &link).expect("symlink");
        assert!(prepare_dir(&link, true).is_err());
    }

    /// The socket is 0600 when bind returns, whatever the umask was, and the umask is restored.
    #[test]
    fn sockets_are_private_from_the_start() {
        let base = tempfile::tempdir().expect("tempdir");
        let path = base.path().join("s.sock");
        // SAFETY: umask cannot fail.
        let before = unsafe { libc::umask(0o022) };
        let listener = bind_private(&path);
        let after = unsafe { libc::umask(before) };
        assert_eq!(after, 0o022, "the umask is restored");
        let _listener = listener.expect("bind");
        let mode = std::fs::symlink_metadata(&path).expect("meta").mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn servers_must_be_ours_or_roots() {
        assert!(trusted_server(1000, 1000));
        assert!(trusted_server(0, 1000));
        assert!(trusted_server(0, 0));
        assert!(!trusted_server(1001, 1000));
        assert!(!trusted_server(1000, 0));
        // A real pair: the other end is this process, so our own uid.
        let (a, _b) = UnixStream::pair().expect("pair");
        assert_eq!(peer_uid(&a).expect("SO_PEERCRED"), my_uid());
        let path = Path::new("/x.sock");
        assert_eq!(check_server(&a, path, my_uid()), Ok(()));
        // Expecting someone else: refused, unless the peer (this process) is root.
        let other = my_uid().wrapping_add(1);
        assert_eq!(check_server(&a, path, other).is_ok(), my_uid() == 0);
    }
}
