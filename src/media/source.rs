//! Where input images come from: one file, a directory (sorted), or a glob.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// An input specification that names nothing usable.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The path does not exist and is not a glob that matches.
    #[error("input {0:?} does not exist")]
    NotFound(String),
    /// A glob pattern that matches no file.
    #[error("input {0:?} matches no file")]
    NoMatch(String),
    /// A glob pattern that does not parse.
    #[error("input {pattern:?} is not a valid glob: {message}")]
    BadGlob {
        /// The pattern.
        pattern: String,
        /// The parser's message.
        message: String,
    },
    /// A directory that cannot be listed.
    #[error("cannot list input directory {path}: {source}")]
    Io {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

fn is_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

fn hidden(p: &Path) -> bool {
    p.file_name()
        .map(|n| n.as_encoded_bytes().starts_with(b"."))
        .unwrap_or(false)
}

fn walk(
    dir: &Path,
    recursive: bool,
    seen: &mut HashSet<PathBuf>,
    out: &mut Vec<PathBuf>,
) -> Result<(), SourceError> {
    // Guard against symlink loops: each real directory is walked once.
    if let Ok(real) = dir.canonicalize() {
        if !seen.insert(real) {
            tracing::warn!(dir = %dir.display(), "skipping a directory already walked (symlink loop?)");
            return Ok(());
        }
    }
    let rd = std::fs::read_dir(dir).map_err(|source| SourceError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut entries: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for p in entries {
        if hidden(&p) {
            continue;
        }
        if p.is_dir() {
            if recursive {
                if let Err(e) = walk(&p, recursive, seen, out) {
                    tracing::warn!(error = %e, "skipping an unreadable directory");
                }
            }
        } else {
            // Files, and also dangling links and special files: the decoder
            // skips and counts what it cannot read.
            out.push(p);
        }
    }
    Ok(())
}

/// Expands an input specification into the ordered list of files to decode.
pub fn list_inputs(spec: &str, recursive: bool) -> Result<Vec<PathBuf>, SourceError> {
    let path = Path::new(spec);
    if path.is_dir() {
        let mut out = vec![];
        walk(path, recursive, &mut HashSet::new(), &mut out)?;
        return Ok(out);
    }
    if path.exists() || path.symlink_metadata().is_ok() {
        return Ok(vec![path.to_path_buf()]);
    }
    if is_glob(spec) {
        let paths = glob::glob(spec).map_err(|e| SourceError::BadGlob {
            pattern: spec.into(),
            message: e.to_string(),
        })?;
        let mut out: Vec<PathBuf> = paths
            .filter_map(Result::ok)
            .filter(|p| !p.is_dir())
            .collect();
        if out.is_empty() {
            return Err(SourceError::NoMatch(spec.into()));
        }
        out.sort();
        return Ok(out);
    }
    Err(SourceError::NotFound(spec.into()))
}

/// Asks the kernel to start reading the file at `path` into the page cache
/// (`posix_fadvise(POSIX_FADV_WILLNEED)`, up to the 16 MiB a decoder reads
/// whole) and returns at once: the producer does this for the file a few
/// places ahead of those being decoded, so that on a cold cache a decoder
/// finds its file in memory instead of waiting on the disk. Best effort: a
/// path that cannot be opened is left for its decode to report; the file
/// is opened as the decoder opens it (`O_NONBLOCK`: a FIFO does not hang).
pub fn read_ahead(path: &Path) {
    use std::os::unix::fs::OpenOptionsExt;
    if let Ok(file) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
    {
        let _ = rustix::fs::fadvise(
            &file,
            0,
            std::num::NonZeroU64::new(16 << 20),
            rustix::fs::Advice::WillNeed,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Resident bytes of `path` in the page cache (util-linux `fincore`).
    fn cached_bytes(path: &Path) -> u64 {
        let out = std::process::Command::new("fincore")
            .args(["--bytes", "--noheadings", "--output", "RES"])
            .arg(path)
            .output()
            .expect("fincore (util-linux) runs");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    }

    /// `read_ahead` brings a file evicted from the page cache back into it
    /// without anyone reading it.
    #[test]
    fn read_ahead_fills_the_page_cache() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("a.jpg");
        let len = 4u64 << 20;
        std::fs::write(&path, vec![7u8; len as usize]).unwrap();
        let f = std::fs::File::options().write(true).open(&path).unwrap();
        f.sync_all().unwrap();
        rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed).unwrap();
        if cached_bytes(&path) > 0 {
            // tmpfs keeps its files in the page cache: nothing to show.
            eprintln!(
                "skipped: {} cannot be evicted from the cache",
                d.path().display()
            );
            return;
        }
        read_ahead(&path);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while cached_bytes(&path) < len {
            assert!(
                std::time::Instant::now() < deadline,
                "{} of {len} bytes cached a minute after read_ahead",
                cached_bytes(&path)
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        // A missing file or a FIFO: nothing happens (and nothing hangs).
        read_ahead(&d.path().join("missing.jpg"));
        nix::unistd::mkfifo(&d.path().join("fifo.jpg"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        read_ahead(&d.path().join("fifo.jpg"));
    }

    #[test]
    fn dir_file_glob_and_missing() {
        let d = tempfile::tempdir().unwrap();
        for n in ["b.png", "a.jpg", "c.txt", ".hidden"] {
            std::fs::write(d.path().join(n), b"x").unwrap();
        }
        std::fs::create_dir(d.path().join("sub")).unwrap();
        std::fs::write(d.path().join("sub/z.png"), b"x").unwrap();
        // A symlink loop must not hang a recursive walk.
        std::os::unix::fs::symlink(d.path(), d.path().join("sub/loop")).unwrap();
        let names = |v: Vec<PathBuf>| -> Vec<String> {
            v.iter()
                .map(|p| p.strip_prefix(d.path()).unwrap().display().to_string())
                .collect()
        };
        let root = d.path().to_str().unwrap();
        assert_eq!(
            names(list_inputs(root, false).unwrap()),
            ["a.jpg", "b.png", "c.txt"]
        );
        assert_eq!(
            names(list_inputs(root, true).unwrap()),
            ["a.jpg", "b.png", "c.txt", "sub/z.png"]
        );
        assert_eq!(
            names(list_inputs(&format!("{root}/*.png"), false).unwrap()),
            ["b.png"]
        );
        assert_eq!(
            names(list_inputs(&format!("{root}/a.jpg"), false).unwrap()),
            ["a.jpg"]
        );
        assert!(matches!(
            list_inputs(&format!("{root}/nope"), false),
            Err(SourceError::NotFound(_))
        ));
        // A pattern that matches nothing is an error, not an empty run.
        assert!(matches!(
            list_inputs(&format!("{root}/nosuch/*.jpg"), false),
            Err(SourceError::NoMatch(_))
        ));
    }
}
