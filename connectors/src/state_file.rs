//! A connector's small file of state, replaced whole: the new content is
//! written to a file beside it, synced, renamed over it, and the directory
//! synced, so that after a crash the file holds the old content or the
//! new, never a mix, and a rename that returned is not undone.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Replace the file at `path` with `content`.
pub fn replace(path: &Path, content: &[u8]) -> std::io::Result<()> {
    let fresh = beside(path);
    {
        let mut file = std::fs::File::create(&fresh)?;
        file.write_all(content)?;
        file.sync_all()?;
    }
    std::fs::rename(&fresh, path)?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)?.sync_all()
}

/// The file the new content is written to first: the name with `.new`
/// appended, in the same directory, so the rename stays on one file system.
fn beside(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".new");
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_content_and_leaves_nothing_beside() {
        let dir = std::env::temp_dir().join(format!("sluice-state-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state");
        replace(&path, b"1").unwrap();
        replace(&path, b"22").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"22");
        assert!(!beside(&path).exists());
        assert_eq!(beside(&path), dir.join("state.new"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
