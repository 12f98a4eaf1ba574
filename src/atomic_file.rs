//! Output files a reader never sees half written: the report and the metrics are written to a
//! hidden temporary file in the same directory, synced, then renamed over their name.

use std::io::Write;
use std::path::Path;

/// Writes `bytes` at `path` atomically; the temporary name starts with `.{name}-` (hidden,
/// so a textfile collector reading `*.prom` skips it) and the file is readable by all.
pub fn write(path: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}-"))
        .suffix(".tmp")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_file_and_leaves_no_temporary_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.json");
        std::fs::write(&path, b"old").unwrap();
        write(&path, "gc_partition-report", b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, [std::ffi::OsString::from("report.json")]);
        assert!(write(&dir.path().join("missing/report.json"), "x", b"").is_err());
    }
}
