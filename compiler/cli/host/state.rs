//! The state directory (/var/lib/fwc unless told otherwise): the lock, the
//! backups, the builds, and the record of an apply waiting for confirmation.
//!
//! - `lock`: held (flock) by whoever changes the rules or the state;
//! - `backup.v4`, `backup.v6`: the live rules before the last apply, as
//!   `iptables-save` printed them; `rollback.v4`, `rollback.v6`: the restore
//!   files that bring them back (also resetting tables fwc created); with
//!   the nft backend `backup.nft` (`nft list table inet fwc`, empty when
//!   there was none) and `rollback.nft`;
//! - `applied/`: the last build loaded (rules.v4, rules.v6, ipsets.restore,
//!   rules.nft, and `backend`: the backend it was loaded with);
//!   `confirmed/`: the last build confirmed (what boot loads); `previous/`:
//!   the one before it;
//! - `pending`: an apply waiting for `fwc confirm` (`id`, `deadline` in
//!   milliseconds since the epoch);
//! - `rollback.log`: what the rollback process did.
//!
//! Every file is written to a temporary name, synced and renamed, with mode
//! 0600: a crash leaves the old file or the new one, never half of one.

use super::backend::{Backend, Part};
use fwc::ir::Family;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub struct State {
    pub dir: PathBuf,
}

/// The state lock, released when dropped (or when the process dies).
pub struct Lock {
    _file: File,
}

/// An apply waiting for confirmation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    pub id: String,
    /// Milliseconds since the epoch after which the rules come back.
    pub deadline: u64,
    /// `SSH_CONNECTION` of the apply, empty when it ran elsewhere.
    pub session: String,
}

impl State {
    pub fn open(dir: &Path) -> Result<State, String> {
        std::fs::create_dir_all(dir).map_err(|error| format!("cannot create the state directory {}: {error}", dir.display()))?;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        Ok(State { dir: dir.to_path_buf() })
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Takes the lock, waiting at most `wait`.
    pub fn lock(&self, wait: Duration) -> Result<Lock, String> {
        let path = self.path("lock");
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|error| format!("cannot open {}: {error}", path.display()))?;
        let start = Instant::now();
        loop {
            // SAFETY: flock on a descriptor this function owns.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                break;
            }
            if start.elapsed() >= wait {
                let holder = std::fs::read_to_string(&path).unwrap_or_default();
                return Err(format!(
                    "another fwc (pid {}) has held {} for more than {} s; try again when it is done",
                    holder.trim(),
                    path.display(),
                    wait.as_secs()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = file.set_len(0);
        let _ = writeln!(file, "{}", std::process::id());
        Ok(Lock { _file: file })
    }

    pub fn read(&self, name: &str) -> Option<String> {
        std::fs::read_to_string(self.path(name)).ok()
    }

    /// Writes `name` atomically with mode 0600, creating its directory.
    pub fn write(&self, name: &str, text: &str) -> Result<(), String> {
        let path = self.path(name);
        let directory = path.parent().expect("a file in the state directory");
        std::fs::create_dir_all(directory).map_err(|error| format!("cannot create {}: {error}", directory.display()))?;
        let temporary = directory.join(format!(".{}.tmp", path.file_name().expect("a file name").to_string_lossy()));
        let result = (|| {
            let mut file = OpenOptions::new().create(true).truncate(true).write(true).mode(0o600).open(&temporary)?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
            std::fs::rename(&temporary, &path)?;
            File::open(directory)?.sync_all()
        })();
        result.map_err(|error| format!("cannot write {}: {error}", path.display()))
    }

    pub fn remove(&self, name: &str) {
        let _ = std::fs::remove_file(self.path(name));
    }

    pub fn pending(&self) -> Option<Pending> {
        let text = self.read("pending")?;
        let field = |key: &str| text.lines().find_map(|line| line.strip_prefix(key)?.strip_prefix(' ')).map(str::to_string);
        Some(Pending {
            id: field("id")?,
            deadline: field("deadline")?.parse().ok()?,
            session: field("session").unwrap_or_default(),
        })
    }

    pub fn set_pending(&self, pending: &Pending) -> Result<(), String> {
        let session = pending.session.replace('\n', " ");
        self.write("pending", &format!("id {}\ndeadline {}\nsession {session}\n", pending.id, pending.deadline))
    }

    /// A line in rollback.log, with the time.
    pub fn log(&self, message: &str) {
        if let Ok(mut file) = OpenOptions::new().create(true).append(true).mode(0o600).open(self.path("rollback.log")) {
            let _ = writeln!(file, "{}.{:03} {message}", now() / 1000, now() % 1000);
        }
    }

    /// The build a directory of the state holds. A build saved before
    /// fwc wrote address sets, or rules.nft, has none.
    pub fn build(&self, name: &str) -> Option<Files> {
        Some(Files {
            v4: self.read(&format!("{name}/rules.v4"))?,
            v6: self.read(&format!("{name}/rules.v6"))?,
            ipsets: self.read(&format!("{name}/ipsets.restore")).unwrap_or_default(),
            nft: self.read(&format!("{name}/rules.nft")).unwrap_or_default(),
        })
    }

    /// The backend a build of the state was loaded with; none for a build
    /// saved before fwc recorded it.
    pub fn backend(&self, name: &str) -> Option<Backend> {
        let recorded = self.read(&format!("{name}/backend"))?;
        clap::ValueEnum::from_str(recorded.trim(), false).ok()
    }

    pub fn write_build(&self, name: &str, files: &Files, backend: Backend) -> Result<(), String> {
        self.write(&format!("{name}/backend"), &format!("{}\n", backend.name()))?;
        self.write(&format!("{name}/ipsets.restore"), &files.ipsets)?;
        self.write(&format!("{name}/rules.nft"), &files.nft)?;
        self.write(&format!("{name}/rules.v4"), &files.v4)?;
        self.write(&format!("{name}/rules.v6"), &files.v6)
    }

    /// The applied build becomes the confirmed one; the confirmed one
    /// becomes the previous one.
    pub fn confirm_applied(&self) -> Result<(), String> {
        let applied = self.build("applied").ok_or("no applied build to confirm")?;
        let backend = self.backend("applied").unwrap_or(Backend::Iptables);
        if let Some(old) = self.build("confirmed") {
            let old_backend = self.backend("confirmed").unwrap_or(Backend::Iptables);
            if (&old, old_backend) != (&applied, backend) {
                self.write_build("previous", &old, old_backend)?;
            }
        }
        self.write_build("confirmed", &applied, backend)
    }
}

/// What apply loads: the rules of both families, and the address sets
/// (`ipset restore` input, empty when the rules use none) loaded first;
/// or, with the nft backend, rules.nft (empty when the build has none).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Files {
    pub v4: String,
    pub v6: String,
    pub ipsets: String,
    pub nft: String,
}

impl Files {
    /// The file that loads a part.
    pub fn text(&self, part: Part) -> &str {
        match part {
            Part::Family(Family::V4) => &self.v4,
            Part::Family(Family::V6) => &self.v6,
            Part::Nft => &self.nft,
        }
    }
}

/// Milliseconds since the epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temporary_state(role: &str) -> State {
        let dir = std::env::temp_dir().join(format!("fwct-{}-state-unit-{role}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        State::open(&dir).expect("a state directory")
    }

    #[test]
    fn files_are_private_and_pending_round_trips() {
        let state = temporary_state("files");
        state.write("applied/rules.v4", "*filter\nCOMMIT\n").unwrap();
        let mode = std::fs::metadata(state.path("applied/rules.v4")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(std::fs::metadata(&state.dir).unwrap().permissions().mode() & 0o777, 0o700);
        assert!(!state.path("applied/.rules.v4.tmp").exists(), "the temporary file is renamed");
        let pending = Pending { id: "1-2".into(), deadline: 1234, session: "198.18.0.2 4 198.18.0.1 22".into() };
        state.set_pending(&pending).unwrap();
        assert_eq!(state.pending(), Some(pending));
        state.remove("pending");
        assert_eq!(state.pending(), None);
        let _ = std::fs::remove_dir_all(&state.dir);
    }

    #[test]
    fn the_lock_is_exclusive_until_dropped() {
        let state = temporary_state("lock");
        let held = state.lock(Duration::ZERO).expect("free");
        let error = state.lock(Duration::from_millis(100)).err().expect("held");
        assert!(error.contains(&format!("pid {}", std::process::id())), "{error}");
        drop(held);
        assert!(state.lock(Duration::ZERO).is_ok());
        let _ = std::fs::remove_dir_all(&state.dir);
    }

    #[test]
    fn confirming_keeps_the_previous_build() {
        let state = temporary_state("confirm");
        let files = |v4: &str, v6: &str, ipsets: &str| Files { v4: v4.into(), v6: v6.into(), ipsets: ipsets.into(), nft: format!("# {v4}\n") };
        assert_eq!(state.backend("applied"), None, "nothing applied yet");
        state.write_build("applied", &files("a4", "a6", ""), Backend::Nft).unwrap();
        state.confirm_applied().unwrap();
        state.write_build("applied", &files("b4", "b6", "create s hash:net\n"), Backend::IptablesLegacy).unwrap();
        state.confirm_applied().unwrap();
        assert_eq!(state.build("confirmed"), Some(files("b4", "b6", "create s hash:net\n")));
        assert_eq!(state.backend("confirmed"), Some(Backend::IptablesLegacy));
        assert_eq!(state.build("previous"), Some(files("a4", "a6", "")));
        assert_eq!(state.backend("previous"), Some(Backend::Nft), "each build keeps the backend it was loaded with");
        // The same files loaded with another backend are another build.
        state.write_build("applied", &files("b4", "b6", "create s hash:net\n"), Backend::Iptables).unwrap();
        state.confirm_applied().unwrap();
        assert_eq!(state.backend("previous"), Some(Backend::IptablesLegacy));
        let _ = std::fs::remove_dir_all(&state.dir);
    }
}
