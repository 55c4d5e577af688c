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

#[cfg(test)]
mod tests {
    use super::*;

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
