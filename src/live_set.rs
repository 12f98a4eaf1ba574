//! The live-set file (spec 3.1): one snapshot id per line, `#` comments, blank lines, and a
//! mandatory last line `# end count=<N> taken_at=<RFC 3339>`.
//!
//! A truncated or stale live set is the classic way a GC loses data, so everything that is not
//! exactly right is refused: a missing, malformed or misplaced trailer, a count that does not
//! match, a malformed or duplicate id, a `taken_at` more than [`MAX_CLOCK_SKEW`] in the future.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};

use crate::ids::{IdError, SnapshotId};

/// How far in the future `taken_at` may be (clock skew between the control plane and us).
pub(crate) const MAX_CLOCK_SKEW: TimeDelta = TimeDelta::minutes(5);

/// A checked live set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveSet {
    /// The snapshots, in file order, without duplicates.
    pub snapshots: Vec<SnapshotId>,
    /// When the control plane read the live set.
    pub taken_at: DateTime<Utc>,
}

impl LiveSet {
    /// Spec 8.2: the lowercase hex SHA-256 of the ids sorted in ascending byte order, each
    /// followed by a newline (the trailer, comments and `taken_at` are not part of it).
    pub(crate) fn sha256(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut ids: Vec<&str> = self.snapshots.iter().map(|s| s.as_str()).collect();
        ids.sort_unstable();
        let mut hasher = Sha256::new();
        for id in ids {
            hasher.update(id.as_bytes());
            hasher.update(b"\n");
        }
        const_hex::encode(hasher.finalize())
    }
}

/// Where the live set comes from: a file, or stdin (`-`).
#[derive(Debug, Clone)]
pub enum LiveSource {
    Stdin,
    File(PathBuf),
}

impl LiveSource {
    pub fn name(&self) -> String {
        match self {
            LiveSource::Stdin => "<stdin>".into(),
            LiveSource::File(path) => path.display().to_string(),
        }
    }

    /// The live set's bytes, whole.
    pub fn read(&self) -> std::io::Result<Vec<u8>> {
        match self {
            LiveSource::Stdin => {
                let mut text = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut text)?;
                Ok(text)
            }
            LiveSource::File(path) => std::fs::read(path),
        }
    }
}

/// Why a live set was refused: where, and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct LiveSetError {
    /// The file name (or `<stdin>`) for messages.
    pub source_name: String,
    /// 1-based line number, when the error is about one line.
    pub line: Option<usize>,
    pub kind: LiveSetErrorKind,
}

impl fmt::Display for LiveSetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}: line {line}: {}", self.source_name, self.kind),
            None => write!(f, "{}: {}", self.source_name, self.kind),
        }
    }
}

/// The ways a live set can be wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LiveSetErrorKind {
    #[error("cannot read the live set: {0}")]
    Unreadable(String),
    #[error("not UTF-8 (first bad byte at offset {offset})")]
    NotUtf8 { offset: usize },
    #[error("bad snapshot id {id:?}: {why}")]
    BadId { id: String, why: IdError },
    #[error("duplicate snapshot id {0:?}")]
    Duplicate(String),
    #[error("missing trailer: the last non-blank line must be `# end count=<N> taken_at=<RFC 3339>` (truncated file?)")]
    MissingTrailer,
    #[error("bad trailer: {0}")]
    BadTrailer(String),
    #[error("trailer line is not the last non-blank line")]
    TrailerNotLast,
    #[error("trailer says count={said} but the file has {found} snapshot ids (truncated file?)")]
    CountMismatch { said: u64, found: u64 },
    #[error("taken_at {taken_at} is more than 5 minutes after now ({now})")]
    FutureTakenAt { taken_at: DateTime<Utc>, now: DateTime<Utc> },
}

/// Reads the live set from `source` and checks it (see [`parse`]).
pub fn read(source: &LiveSource, now: DateTime<Utc>) -> Result<LiveSet, LiveSetError> {
    let text = source.read().map_err(|e| LiveSetError {
        source_name: source.name(),
        line: None,
        kind: LiveSetErrorKind::Unreadable(e.to_string()),
    })?;
    parse(&text, &source.name(), now)
}

/// Parses and checks a live-set file. `source_name` names it in errors; `now` is the clock
/// the `taken_at` check uses.
pub fn parse(text: &[u8], source_name: &str, now: DateTime<Utc>) -> Result<LiveSet, LiveSetError> {
    let err = |line: Option<usize>, kind| LiveSetError { source_name: source_name.to_owned(), line, kind };
    let text = match std::str::from_utf8(text) {
        Ok(text) => text,
        Err(e) => {
            let offset = e.valid_up_to();
            let line = text.get(..offset).map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count()) + 1;
            return Err(err(Some(line), LiveSetErrorKind::NotUtf8 { offset }));
        }
    };
    let lines: Vec<(usize, &str)> =
        text.split('\n').enumerate().map(|(i, l)| (i + 1, l.trim_ascii())).filter(|(_, l)| !l.is_empty()).collect();
    let Some((&(trailer_line, trailer), body)) = lines.split_last() else {
        return Err(err(None, LiveSetErrorKind::MissingTrailer));
    };

    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut snapshots = Vec::new();
    for &(n, line) in body {
        if let Some(comment) = line.strip_prefix('#') {
            if looks_like_trailer(comment) {
                return Err(err(Some(n), LiveSetErrorKind::TrailerNotLast));
            }
            continue;
        }
        let id = SnapshotId::parse(line)
            .map_err(|why| err(Some(n), LiveSetErrorKind::BadId { id: line.to_owned(), why }))?;
        if seen.insert(line, n).is_some() {
            return Err(err(Some(n), LiveSetErrorKind::Duplicate(line.to_owned())));
        }
        snapshots.push(id);
    }

    let Some(comment) = trailer.strip_prefix('#').filter(|c| looks_like_trailer(c)) else {
        return Err(err(None, LiveSetErrorKind::MissingTrailer));
    };
    let (said, taken_at) =
        parse_trailer(comment).map_err(|why| err(Some(trailer_line), LiveSetErrorKind::BadTrailer(why)))?;
    let found = snapshots.len() as u64;
    if said != found {
        return Err(err(Some(trailer_line), LiveSetErrorKind::CountMismatch { said, found }));
    }
    if now.checked_add_signed(MAX_CLOCK_SKEW).is_some_and(|limit| taken_at > limit) {
        return Err(err(Some(trailer_line), LiveSetErrorKind::FutureTakenAt { taken_at, now }));
    }
    Ok(LiveSet { snapshots, taken_at })
}

/// A comment (the text after `#`) whose first word is `end`.
fn looks_like_trailer(comment: &str) -> bool {
    comment.split_ascii_whitespace().next() == Some("end")
}

/// Parses `end count=<N> taken_at=<RFC 3339>` (the text after `#`).
fn parse_trailer(comment: &str) -> Result<(u64, DateTime<Utc>), String> {
    let words: Vec<&str> = comment.split_ascii_whitespace().collect();
    let [_end, count, taken_at] = words.as_slice() else {
        return Err(format!("expected `# end count=<N> taken_at=<RFC 3339>`, got {:?}", format!("#{comment}")));
    };
    let count = count.strip_prefix("count=").ok_or_else(|| format!("expected count=<N>, got {count:?}"))?;
    let count = parse_u64(count).ok_or_else(|| format!("count {count:?} is not a decimal u64"))?;
    let taken_at =
        taken_at.strip_prefix("taken_at=").ok_or_else(|| format!("expected taken_at=<RFC 3339>, got {taken_at:?}"))?;
    let taken_at = DateTime::parse_from_rfc3339(taken_at)
        .map_err(|e| format!("taken_at {taken_at:?} is not RFC 3339: {e}"))?
        .with_timezone(&Utc);
    Ok((count, taken_at))
}

/// Decimal digits only (no sign, no spaces), fitting in a u64.
pub(crate) fn parse_u64(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Renders a live-set file that [`parse`] accepts (given distinct ids).
pub fn render(snapshots: &[SnapshotId], taken_at: DateTime<Utc>) -> String {
    let mut out = String::new();
    for s in snapshots {
        out.push_str(s.as_str());
        out.push('\n');
    }
    out.push_str(&format!(
        "# end count={} taken_at={}\n",
        snapshots.len(),
        taken_at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap().with_timezone(&Utc)
    }

    fn kind(text: &str) -> (Option<usize>, LiveSetErrorKind) {
        let e = parse(text.as_bytes(), "live.txt", now()).unwrap_err();
        (e.line, e.kind)
    }

    const T: &str = "taken_at=2025-12-31T23:00:00Z";

    #[test]
    fn valid_files_parse() {
        let text = format!("# live set\n\n  snap-1 \r\nsnap-2\n# a comment\nsnap-3\n\n# end count=3 {T}\n\n");
        let live = parse(text.as_bytes(), "live.txt", now()).unwrap();
        let ids: Vec<&str> = live.snapshots.iter().map(|s| s.as_str()).collect();
        assert_eq!(ids, ["snap-1", "snap-2", "snap-3"]);
        assert_eq!(live.taken_at, now() - TimeDelta::hours(1));
    }

    /// Spec 8.2: the ids sorted by byte, each followed by a newline; comments, the trailer,
    /// `taken_at` and the file's order are not part of it (values from Python's hashlib).
    #[test]
    fn the_live_set_digest_is_of_the_sorted_ids_alone() {
        let digest = |text: &str| parse(text.as_bytes(), "x", now()).unwrap().sha256();
        let expected = "f53b0fbe03496df75ff6eb1f7da668aef3d642bae3e7c8801380dabe2302b487"; // "snap-a\nsnap-b\nsnap-c\n"
        assert_eq!(digest(&format!("snap-a\nsnap-b\nsnap-c\n# end count=3 {T}")), expected);
        assert_eq!(digest("snap-c\n# moved\nsnap-a\nsnap-b\n# end count=3 taken_at=2025-12-30T00:00:00Z"), expected);
        let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(digest(&format!("# end count=0 {T}")), empty);
    }

    #[test]
    fn zero_snapshots_is_valid() {
        let live = parse(format!("# end count=0 {T}").as_bytes(), "x", now()).unwrap();
        assert!(live.snapshots.is_empty());
    }

    #[test]
    fn taken_at_up_to_five_minutes_ahead_is_fine() {
        assert!(parse(b"# end count=0 taken_at=2026-01-01T00:05:00Z", "x", now()).is_ok());
        assert!(parse(b"# end count=0 taken_at=2026-01-01T02:05:00+02:00", "x", now()).is_ok());
        let (line, k) = kind("\n# end count=0 taken_at=2026-01-01T00:05:00.001Z");
        assert_eq!(line, Some(2));
        assert!(matches!(k, LiveSetErrorKind::FutureTakenAt { .. }), "{k:?}");
    }

    #[test]
    fn not_utf8() {
        let e = parse(b"snap-1\nsn\xffap\n", "live.txt", now()).unwrap_err();
        assert_eq!((e.line, e.kind), (Some(2), LiveSetErrorKind::NotUtf8 { offset: 9 }));
    }

    #[test]
    fn bad_ids() {
        let (line, k) = kind(&format!("snap-1\nsnap/2\n# end count=2 {T}"));
        assert_eq!(line, Some(2));
        assert_eq!(k, LiveSetErrorKind::BadId { id: "snap/2".into(), why: IdError::BadChar(4) });
        let (_, k) = kind(&format!("snap 1\n# end count=1 {T}"));
        assert!(matches!(k, LiveSetErrorKind::BadId { .. }));
        let (_, k) = kind(&format!("{}\n# end count=1 {T}", "a".repeat(129)));
        assert!(matches!(k, LiveSetErrorKind::BadId { why: IdError::TooLong(129), .. }));
    }

    #[test]
    fn duplicates() {
        let e =
            parse(format!("a\nb\n\nsnap-3\nc\n\nsnap-3\n# end count=5 {T}").as_bytes(), "live.txt", now()).unwrap_err();
        assert_eq!(e.to_string(), "live.txt: line 7: duplicate snapshot id \"snap-3\"");
    }

    #[test]
    fn missing_trailer() {
        for text in ["", "\n \n", "snap-1\nsnap-2\n", "snap-1\n# a comment\n", "# end count=0 T\nsnap-1"] {
            let (line, k) = kind(text);
            if text.starts_with("# end") {
                assert_eq!(k, LiveSetErrorKind::TrailerNotLast, "{text:?}");
            } else {
                assert_eq!((line, k), (None, LiveSetErrorKind::MissingTrailer), "{text:?}");
            }
        }
        let e = parse(b"snap-1\n", "live.txt", now()).unwrap_err();
        assert!(e.to_string().starts_with("live.txt: missing trailer"), "{e}");
    }

    #[test]
    fn bad_trailers() {
        for t in [
            "# end",
            "# end count=1",
            "# end taken_at=2025-12-31T23:00:00Z count=1",
            "# end count=+1 taken_at=2025-12-31T23:00:00Z",
            "# end count=x taken_at=2025-12-31T23:00:00Z",
            "# end count=99999999999999999999 taken_at=2025-12-31T23:00:00Z",
            "# end count=1 taken_at=yesterday",
            "# end count=1 taken_at=2025-12-31",
            "# end count=1 taken_at=2025-12-31T23:00:00Z extra",
        ] {
            let (line, k) = kind(&format!("snap-1\n{t}\n"));
            assert_eq!(line, Some(2), "{t}");
            assert!(matches!(k, LiveSetErrorKind::BadTrailer(_)), "{t}: {k:?}");
        }
    }

    #[test]
    fn trailer_not_last() {
        let (line, k) = kind(&format!("snap-1\n# end count=1 {T}\n# end count=1 {T}\n"));
        assert_eq!((line, k), (Some(2), LiveSetErrorKind::TrailerNotLast));
        let (line, k) = kind(&format!("# end count=0 {T}\nsnap-1\n# end count=1 {T}\n"));
        assert_eq!((line, k), (Some(1), LiveSetErrorKind::TrailerNotLast));
        let (_, k) = kind(&format!("snap-1\n# end count=1 {T}\n# trailing comment\n"));
        assert_eq!(k, LiveSetErrorKind::TrailerNotLast);
    }

    #[test]
    fn count_mismatch() {
        let (line, k) = kind(&format!("snap-1\nsnap-2\n# end count=3 {T}\n"));
        assert_eq!((line, k), (Some(3), LiveSetErrorKind::CountMismatch { said: 3, found: 2 }));
    }

    #[test]
    fn comments_that_merely_start_with_end_are_comments() {
        let live = parse(format!("#endpoint x\n# ending\nsnap-1\n# end count=1 {T}").as_bytes(), "x", now());
        assert_eq!(live.unwrap().snapshots.len(), 1);
    }

    #[test]
    fn far_edges_of_time_do_not_panic() {
        let max = DateTime::<Utc>::MAX_UTC;
        assert!(parse(b"# end count=0 taken_at=9999-12-31T23:59:59Z", "x", max).is_ok());
        let min = DateTime::<Utc>::MIN_UTC;
        let e = parse(b"# end count=0 taken_at=0000-01-01T00:00:00Z", "x", min).unwrap_err();
        assert!(matches!(e.kind, LiveSetErrorKind::FutureTakenAt { .. }));
    }

    fn ids_strategy() -> impl Strategy<Value = Vec<SnapshotId>> {
        proptest::collection::btree_set("[A-Za-z0-9][A-Za-z0-9._-]{0,20}", 0..20)
            .prop_map(|s| s.into_iter().map(|i| SnapshotId::parse(&i).unwrap()).collect())
    }

    proptest! {
        #[test]
        fn render_then_parse(ids in ids_strategy(), secs in 0i64..4_000_000_000, nanos in 0u32..1_000_000_000) {
            let taken_at = DateTime::from_timestamp(secs, nanos).unwrap();
            let now = taken_at + TimeDelta::seconds(1);
            let live = parse(render(&ids, taken_at).as_bytes(), "x", now).unwrap();
            prop_assert_eq!(live, LiveSet { snapshots: ids, taken_at });
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse(&bytes, "x", now());
        }

        #[test]
        fn arbitrary_text_never_panics(text in "([a-z0-9# =:.TZ+-]{0,12}\n?){0,20}") {
            let _ = parse(text.as_bytes(), "x", now());
        }

        #[test]
        fn mutated_files_never_panic(ids in ids_strategy(), edits in proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 1..8)) {
            let mut bytes = render(&ids, now()).into_bytes();
            crate::manifest::tests::mutate(&mut bytes, &edits);
            let _ = parse(&bytes, "x", now());
        }
    }
}
