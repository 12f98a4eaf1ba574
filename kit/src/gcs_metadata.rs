//! The metadata fake-gcs-server's filesystem backend keeps beside each object: JSON in the
//! `user.metadata` extended attribute of the file `ROOT/<bucket>/<key>`. A leaf of the kit:
//! [`crate::ageing`] ages `gs://` objects with it, [`crate::fake_gcs`] documents it.

use std::path::Path as FsPath;

use chrono::{DateTime, SecondsFormat, Utc};

/// The extended attribute where fake-gcs-server's filesystem backend keeps an object's
/// metadata.
const METADATA_XATTR: &str = "user.metadata";

/// Makes the object stored in `file` (under fake-gcs-server's filesystem root) report `when`
/// as its last-modified time, in listings and HEAD.
pub fn set_updated(file: &FsPath, when: DateTime<Utc>) -> std::io::Result<()> {
    let invalid = |e: serde_json::Error| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
    let mut buf = vec![0u8; 4096];
    let len = loop {
        match rustix::fs::getxattr(file, METADATA_XATTR, &mut buf[..]) {
            Ok(len) => break len,
            Err(rustix::io::Errno::RANGE) => buf.resize(buf.len() * 4, 0),
            Err(e) => return Err(e.into()),
        }
    };
    let mut meta: serde_json::Value = serde_json::from_slice(&buf[..len]).map_err(invalid)?;
    let stamp = serde_json::Value::from(when.to_rfc3339_opts(SecondsFormat::AutoSi, true));
    for field in ["Updated", "Created"] {
        meta[field] = stamp.clone();
    }
    let json = serde_json::to_vec(&meta).map_err(invalid)?;
    rustix::fs::setxattr(file, METADATA_XATTR, &json, rustix::fs::XattrFlags::empty())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_updated_rewrites_both_times_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("obj");
        std::fs::write(&file, b"x").unwrap();
        let before = br#"{"Updated":"2026-01-01T00:00:00Z","Created":"2026-01-01T00:00:00Z","Generation":7}"#;
        rustix::fs::setxattr(&file, METADATA_XATTR, before, rustix::fs::XattrFlags::empty())
            .expect("the temporary directory supports user xattrs");
        let when = DateTime::from_timestamp(1_500_000_000, 123_000_000).unwrap();
        set_updated(&file, when).unwrap();
        let mut buf = vec![0u8; 4096];
        let len = rustix::fs::getxattr(&file, METADATA_XATTR, &mut buf[..]).unwrap();
        let meta: serde_json::Value = serde_json::from_slice(&buf[..len]).unwrap();
        assert_eq!(meta["Updated"], "2017-07-14T02:40:00.123Z");
        assert_eq!(meta["Created"], "2017-07-14T02:40:00.123Z");
        assert_eq!(meta["Generation"], 7);
    }

    #[test]
    fn set_updated_names_a_missing_object() {
        let dir = tempfile::tempdir().unwrap();
        let err = set_updated(&dir.path().join("gone"), Utc::now()).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    }
}
