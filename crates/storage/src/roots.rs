//! Which local paths `file://` URIs may name, decided on resolved paths.
//!
//! Roots are resolved through symlinks when configured, and a path is
//! resolved before it is checked, so neither a symlink nor a sibling
//! directory that merely shares the root's prefix (`/srv/media-evil`) gets
//! past the check. The URI parser has already refused `.` and `..`
//! segments. The check names the root a path lies under; the file is then
//! opened beneath that root (`beneath.rs`), so a symlink swapped in after the
//! check cannot escape either.

use nommer_model::{CodedError, ErrorCode};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileRoots {
    /// Any absolute path (feederd on loopback with no roots configured);
    /// files are opened with no symlink anywhere in their path.
    Any,
    /// Only paths under these directories (resolved).
    Only(Vec<PathBuf>),
    /// No `file://` at all.
    Off,
}

/// A checked path: the root it lies under (none for [`FileRoots::Any`]) and
/// the path itself, resolved through the symlinks that exist now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    pub root: Option<PathBuf>,
    pub path: PathBuf,
}

impl Anchor {
    /// The anchor of this path's directory.
    pub fn parent(&self) -> Anchor {
        Anchor {
            root: self.root.clone(),
            path: self.path.parent().unwrap_or(Path::new("/")).to_path_buf(),
        }
    }
}

/// Resolve `path` through the symlinks of its longest existing ancestor; the
/// rest, which does not exist yet, is appended as written.
pub fn resolve(path: &Path) -> PathBuf {
    let mut existing = path.to_path_buf();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = std::fs::canonicalize(&existing) {
            let mut resolved = real;
            resolved.extend(rest.iter().rev());
            return resolved;
        }
        match (
            existing.file_name().map(|n| n.to_os_string()),
            existing.parent(),
        ) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                existing = parent.to_path_buf();
            }
            _ => return path.to_path_buf(),
        }
    }
}

impl FileRoots {
    /// Roots as configured, each resolved through symlinks.
    pub fn only(roots: impl IntoIterator<Item = PathBuf>) -> FileRoots {
        FileRoots::Only(roots.into_iter().map(|root| resolve(&root)).collect())
    }

    /// The roots to hand a worker with none of its own.
    pub fn list(&self) -> Vec<String> {
        match self {
            FileRoots::Only(roots) => roots.iter().map(|r| r.display().to_string()).collect(),
            FileRoots::Any | FileRoots::Off => Vec::new(),
        }
    }

    /// Check `path` and say where it is to be opened from.
    pub fn anchor(&self, path: &Path) -> Result<Anchor, CodedError> {
        match self {
            FileRoots::Any => Ok(Anchor {
                root: None,
                path: path.to_path_buf(),
            }),
            FileRoots::Off => Err(CodedError::new(
                ErrorCode::UriNotAllowed,
                "file:// URIs are off: feederd listens beyond loopback and no file_roots are configured",
            )),
            FileRoots::Only(roots) => {
                let resolved = resolve(path);
                match roots.iter().find(|root| resolved.starts_with(root)) {
                    Some(root) => Ok(Anchor {
                        root: Some(root.clone()),
                        path: resolved,
                    }),
                    None => Err(CodedError::new(
                        ErrorCode::UriNotAllowed,
                        format!("{} is outside the configured file_roots", path.display()),
                    )),
                }
            }
        }
    }

    pub fn check(&self, path: &Path) -> Result<(), CodedError> {
        self.anchor(path).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_and_paths_are_compared_resolved() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("media");
        std::fs::create_dir_all(root.join("in")).unwrap();
        std::fs::create_dir_all(dir.path().join("media-evil")).unwrap();
        std::fs::create_dir_all(dir.path().join("secret")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), root.join("in/link")).unwrap();
        std::os::unix::fs::symlink(&root, dir.path().join("alias")).unwrap();
        // A root configured through a symlink is the directory it names.
        let roots = FileRoots::only([dir.path().join("alias")]);
        let inside = roots.anchor(&root.join("in/a.mp4")).unwrap();
        assert_eq!(inside.root.as_deref(), Some(resolve(&root).as_path()));
        roots.check(&dir.path().join("alias/in/new/b.mp4")).unwrap();
        for outside in [
            dir.path().join("media-evil/x.mp4"),
            dir.path().join("mediaevil"),
            root.join("in/link/x.mp4"),
            PathBuf::from("/etc/passwd"),
        ] {
            let e = roots.check(&outside).unwrap_err();
            assert_eq!(e.code, ErrorCode::UriNotAllowed, "{}", outside.display());
        }
    }
}

#[cfg(test)]
mod beneath_tests {
    use super::*;
    use crate::beneath;

    #[test]
    fn a_symlink_swapped_in_after_the_check_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let root = resolve(&dir.path().join("media"));
        std::fs::create_dir_all(root.join("in")).unwrap();
        std::fs::write(dir.path().join("secret"), "secret").unwrap();
        std::fs::write(root.join("in/a.mp4"), "media").unwrap();
        let roots = FileRoots::Only(vec![root.clone()]);
        let anchor = roots.anchor(&root.join("in/a.mp4")).unwrap();
        assert!(beneath::open_read(&anchor).is_ok());
        // Checked, then swapped: the directory becomes a link out of the root.
        std::fs::rename(root.join("in"), root.join("was-in")).unwrap();
        std::os::unix::fs::symlink(dir.path(), root.join("in")).unwrap();
        std::fs::copy(dir.path().join("secret"), dir.path().join("a.mp4")).unwrap();
        let e = beneath::open_read(&anchor).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied, "{e}");
        // With no roots, no symlink at all is followed.
        let any = FileRoots::Any.anchor(&root.join("in/a.mp4")).unwrap();
        let e = beneath::open_read(&any).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied, "{e}");
        let plain = FileRoots::Any.anchor(&root.join("was-in/a.mp4")).unwrap();
        assert!(beneath::open_read(&plain).is_ok());
    }
}
