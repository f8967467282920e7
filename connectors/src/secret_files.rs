//! Files that hold secrets (tokens, private keys, OAuth2 credentials): as
//! ssh does, sluice warns when one is readable by anyone but its owner.

use std::path::Path;

/// The warning for a secret file that its group or others may read or
/// write, or `None` when only its owner may (or it cannot be looked at:
/// reading it will say why).
pub fn too_open(what: &str, path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then(|| {
        format!(
            "{what} {} may be read by others than its owner (mode {mode:04o}): chmod 600 {}",
            path.display(),
            path.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn a_file_others_may_read_is_named_and_an_owners_only_file_is_not() {
        let path = std::env::temp_dir().join(format!("sluice-secret-{}", std::process::id()));
        std::fs::write(&path, "token").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let warning = too_open("the token file", &path).unwrap();
        assert!(
            warning.contains("mode 0644") && warning.contains("chmod 600"),
            "{warning}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(too_open("the token file", &path), None);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(too_open("the token file", &path), None, "missing");
    }
}
