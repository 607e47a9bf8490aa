//! One upload job's record and its file format (a small text file ending
//! in a CRC line, so a damaged record is recognised and skipped instead of
//! misread). See [`super::journal`] for where records live.
//!
//! ```text
//! keyfs-job 1
//! id 7
//! path dir/a%25b.txt
//! size 1234
//! crc 5f2d3a26
//! state queued
//! reason
//! mtime 978307200 500000000      (optional: the mtime the program set)
//! mode 600                       (optional, octal: the mode it set)
//! end 0badf00d
//! ```
//!
//! The optional lines come after `reason`, in any order; lines a reader
//! does not know are skipped. So records written before they existed read
//! as "nothing wanted", and an older keyfs reads newer records (ignoring
//! what it cannot apply).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobState {
    /// Still open for writing in the mount. After a crash such a file is
    /// reported and kept, never uploaded half-written nor deleted.
    Open,
    /// Closed and waiting for (or in) upload.
    Queued,
    /// A permanent error (e.g. 553); the spooled copy is kept.
    Failed(String),
}

/// What the program set on the file besides its bytes (`touch -d`,
/// `cp -p`, `rsync -t`, `chmod`): applied on the server after the verified
/// upload, where it offers a way (MFMT, SITE CHMOD).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Wanted {
    pub mtime: Option<SystemTime>,
    /// Permission bits (`0o7777` at most).
    pub mode: Option<u32>,
}

impl Wanted {
    pub fn is_empty(&self) -> bool {
        self.mtime.is_none() && self.mode.is_none()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobRecord {
    pub id: u64,
    /// Path relative to the mount root, `/`-separated.
    pub remote_path: String,
    pub size: u64,
    pub crc: u32,
    pub state: JobState,
    pub wanted: Wanted,
}

impl JobRecord {
    /// A record with nothing wanted besides the bytes.
    pub fn new(id: u64, remote_path: String, size: u64, crc: u32, state: JobState) -> JobRecord {
        JobRecord {
            id,
            remote_path,
            size,
            crc,
            state,
            wanted: Wanted::default(),
        }
    }
}

const MAGIC: &str = "keyfs-job 1";

/// Seconds (negative before 1970) and nanoseconds of `t`.
fn to_parts(t: SystemTime) -> (i64, u32) {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (
            i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            d.subsec_nanos(),
        ),
        Err(e) => {
            let d = e.duration();
            let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            if d.subsec_nanos() == 0 {
                (-secs, 0)
            } else {
                (-secs - 1, 1_000_000_000 - d.subsec_nanos())
            }
        }
    }
}

fn from_parts(secs: i64, nanos: u32) -> Option<SystemTime> {
    if nanos >= 1_000_000_000 {
        return None;
    }
    let base = if secs >= 0 {
        UNIX_EPOCH.checked_add(Duration::from_secs(secs.unsigned_abs()))?
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_secs(secs.unsigned_abs()))?
    };
    base.checked_add(Duration::from_nanos(u64::from(nanos)))
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '%' => out.push_str("%25"),
            '\n' => out.push_str("%0A"),
            '\r' => out.push_str("%0D"),
            c => out.push(c),
        }
    }
    out
}

/// Decodes `%XX` escapes (any byte); None for a bad escape or a result
/// that is not UTF-8. Shared with keyftpd's metadata log, whose escaping
/// differs but whose decoding is the same.
pub fn percent_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The bytes of a record file.
pub fn encode(rec: &JobRecord) -> String {
    let (state, reason) = match &rec.state {
        JobState::Open => ("open", ""),
        JobState::Queued => ("queued", ""),
        JobState::Failed(r) => ("failed", r.as_str()),
    };
    let mut body = format!(
        "{MAGIC}\nid {}\npath {}\nsize {}\ncrc {:08x}\nstate {}\nreason {}\n",
        rec.id,
        escape(&rec.remote_path),
        rec.size,
        rec.crc,
        state,
        escape(reason)
    );
    if let Some(t) = rec.wanted.mtime {
        let (secs, nanos) = to_parts(t);
        body.push_str(&format!("mtime {secs} {nanos}\n"));
    }
    if let Some(m) = rec.wanted.mode {
        body.push_str(&format!("mode {m:o}\n"));
    }
    let sum = crc32fast::hash(body.as_bytes());
    format!("{body}end {sum:08x}\n")
}

/// Parses a record file; `None` for anything torn, damaged or foreign.
pub fn decode(text: &str) -> Option<JobRecord> {
    let end_at = text.rfind("end ")?;
    let (body, end) = text.split_at(end_at);
    let sum = u32::from_str_radix(end.strip_prefix("end ")?.strip_suffix('\n')?, 16).ok()?;
    if crc32fast::hash(body.as_bytes()) != sum {
        return None;
    }
    let mut lines = body.lines();
    if lines.next()? != MAGIC {
        return None;
    }
    let mut field = |name: &str| -> Option<String> {
        let l = lines.next()?;
        let v = l.strip_prefix(name)?.strip_prefix(' ')?;
        Some(v.to_string())
    };
    let id = field("id")?.parse().ok()?;
    let remote_path = percent_decode(&field("path")?)?;
    let size = field("size")?.parse().ok()?;
    let crc = u32::from_str_radix(&field("crc")?, 16).ok()?;
    let state = field("state")?;
    let reason = percent_decode(&field("reason")?)?;
    let state = match state.as_str() {
        "open" => JobState::Open,
        "queued" => JobState::Queued,
        "failed" => JobState::Failed(reason),
        _ => return None,
    };
    let mut wanted = Wanted::default();
    for l in lines {
        if let Some(v) = l.strip_prefix("mtime ") {
            let (s, n) = v.split_once(' ')?;
            wanted.mtime = Some(from_parts(s.parse().ok()?, n.parse().ok()?)?);
        } else if let Some(v) = l.strip_prefix("mode ") {
            wanted.mode = Some(u32::from_str_radix(v, 8).ok().filter(|m| *m <= 0o7777)?);
        }
    }
    Some(JobRecord {
        id,
        remote_path,
        size,
        crc,
        state,
        wanted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(wanted: Wanted) -> JobRecord {
        JobRecord {
            wanted,
            ..JobRecord::new(7, "d/a b.txt".into(), 1234, 0x5F2D3A26, JobState::Queued)
        }
    }

    /// A record as keyfs wrote it before the optional lines existed.
    #[test]
    fn old_records_read_with_nothing_wanted() {
        let body =
            "keyfs-job 1\nid 7\npath d/a b.txt\nsize 1234\ncrc 5f2d3a26\nstate queued\nreason \n";
        let old = format!("{body}end {:08x}\n", crc32fast::hash(body.as_bytes()));
        assert_eq!(decode(&old), Some(rec(Wanted::default())));
        // And without the optional lines, the encoding is byte for byte the old one.
        assert_eq!(encode(&rec(Wanted::default())), old);
    }

    #[test]
    fn wanted_times_and_modes_round_trip() {
        let times = [
            UNIX_EPOCH + Duration::new(978_307_200, 0),
            UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789),
            UNIX_EPOCH - Duration::new(86_400, 0),
            UNIX_EPOCH - Duration::new(1, 250_000_000),
            UNIX_EPOCH,
        ];
        for t in times {
            for mode in [None, Some(0o600), Some(0o4755), Some(0)] {
                let r = rec(Wanted {
                    mtime: Some(t),
                    mode,
                });
                assert_eq!(decode(&encode(&r)), Some(r.clone()), "{t:?} {mode:?}");
            }
        }
        let r = rec(Wanted {
            mtime: None,
            mode: Some(0o640),
        });
        assert!(encode(&r).contains("\nmode 640\n"));
        assert_eq!(decode(&encode(&r)), Some(r));
    }

    #[test]
    fn unknown_lines_are_skipped_bad_values_reject_the_record() {
        let seal = |body: &str| format!("{body}end {:08x}\n", crc32fast::hash(body.as_bytes()));
        let head =
            "keyfs-job 1\nid 7\npath d/a b.txt\nsize 1234\ncrc 5f2d3a26\nstate queued\nreason \n";
        let later = seal(&format!("{head}owner 0 0\nmode 600\n"));
        assert_eq!(decode(&later).map(|r| r.wanted.mode), Some(Some(0o600)));
        for bad in [
            "mode 9\n",
            "mode 17777\n",
            "mtime 1\n",
            "mtime x 0\n",
            "mtime 1 1000000000\n",
        ] {
            assert_eq!(decode(&seal(&format!("{head}{bad}"))), None, "{bad:?}");
        }
    }
}
