//! Directory listings: MLSD/MLST facts (RFC 3659), `ls -l` style LIST, NLST.
//!
//! MLSD adds `x.keystate=partial|complete` for files with key metadata, so a
//! client can tell an interrupted upload from a finished one, and
//! `x.key=0x%08X`, the bound key, while the file is still exactly what
//! keyftpd wrote (size and mtime as recorded when it computed the CRC). A
//! client verifies an upload with one MLST: `complete` means the CRC keyftpd
//! computed over the bytes it wrote equals that key (see keyftp(7)). The
//! reserved name `.keyftpd` is never listed.

use std::fs::Metadata;
use std::os::unix::fs::PermissionsExt;
use std::time::{SystemTime, UNIX_EPOCH};

use super::store::FileMeta;

/// (year, month, day, hour, min, sec) in UTC.
pub fn utc(t: SystemTime) -> (i64, u32, u32, u32, u32, u32) {
    let secs = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    };
    let days = secs.div_euclid(86400);
    let rem = secs.rem_euclid(86400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = if m <= 2 { y + 1 } else { y };
    (
        y,
        m,
        d,
        (rem / 3600) as u32,
        (rem % 3600 / 60) as u32,
        (rem % 60) as u32,
    )
}

/// `YYYYMMDDHHMMSS` (MDTM, MLSD modify fact).
pub fn timeval(md: &Metadata) -> String {
    let (y, mo, d, h, mi, s) = utc(md.modified().unwrap_or(UNIX_EPOCH));
    format!("{y:04}{mo:02}{d:02}{h:02}{mi:02}{s:02}")
}

/// Parses `YYYYMMDDHHMMSS` (UTC, as MDTM prints it) for MFMT; None for
/// anything else, including a day that does not exist.
pub fn parse_timeval(s: &str) -> Option<SystemTime> {
    if s.len() != 14 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = |a: usize, b: usize| s[a..b].parse::<i64>().ok();
    let (y, mo, d, h, mi, sec) = (
        n(0, 4)?,
        n(4, 6)?,
        n(6, 8)?,
        n(8, 10)?,
        n(10, 12)?,
        n(12, 14)?,
    );
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let mdays = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&mo)
        || d < 1
        || d > mdays[(mo - 1) as usize]
        || h > 23
        || mi > 59
        || sec > 59
    {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let yy = if mo <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86400 + h * 3600 + mi * 60 + sec;
    let secs = u64::try_from(secs).ok()?;
    UNIX_EPOCH.checked_add(std::time::Duration::from_secs(secs))
}

/// The MLSD/MLST facts of an entry, ending with `; `+name.
pub fn mlsx_line(name: &str, md: &Metadata, meta: Option<&FileMeta>, cdir: bool) -> String {
    let mut s = String::with_capacity(96 + name.len());
    if cdir {
        s.push_str("type=cdir;");
    } else if md.is_dir() {
        s.push_str("type=dir;");
    } else {
        s.push_str("type=file;");
    }
    if md.is_file() {
        s.push_str(&format!("size={};", md.len()));
    }
    s.push_str(&format!("modify={};", timeval(md)));
    s.push_str(if md.is_dir() {
        "perm=flcdmpe;"
    } else {
        "perm=adfrw;"
    });
    if let (true, Some(m)) = (md.is_file(), meta) {
        s.push_str(&format!("x.keystate={};", m.state.as_str()));
        if let Some(k) = key_fact(md, m) {
            s.push_str(&format!("x.key=0x{:08X};", k.0));
        }
    }
    s.push(' ');
    s.push_str(name);
    s
}

/// The key to show as `x.key`: the recorded key, but only while the file is
/// the one its CRC was recorded of (size, mtime, dev, inode, ctime). A file changed behind
/// keyftpd's back (or a partial cut off by a crash) shows no key, so a
/// client falls back to asking for a CRC of the file as it is now.
fn key_fact(md: &Metadata, m: &FileMeta) -> Option<crate::key::Key> {
    m.key.filter(|_| m.trusted_crc(md).is_some())
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// An `ls -l` style line for LIST.
pub fn list_line(name: &str, md: &Metadata) -> String {
    let mode = md.permissions().mode();
    let mut perm = String::with_capacity(10);
    perm.push(if md.is_dir() { 'd' } else { '-' });
    for shift in [6u32, 3, 0] {
        let bits = (mode >> shift) & 7;
        perm.push(if bits & 4 != 0 { 'r' } else { '-' });
        perm.push(if bits & 2 != 0 { 'w' } else { '-' });
        perm.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    let mtime = md.modified().unwrap_or(UNIX_EPOCH);
    let (y, mo, d, h, mi, _) = utc(mtime);
    let recent = SystemTime::now()
        .duration_since(mtime)
        .map(|a| a.as_secs() < 180 * 86400)
        .unwrap_or(true);
    let when = if recent {
        format!("{h:02}:{mi:02}")
    } else {
        format!(" {y}")
    };
    let month = MONTHS[(mo.clamp(1, 12) - 1) as usize];
    format!(
        "{perm} 1 ftp ftp {:>12} {month} {d:>2} {when:>5} {name}",
        md.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn civil_dates() {
        assert_eq!(utc(UNIX_EPOCH), (1970, 1, 1, 0, 0, 0));
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400 + 3661); // 2000-02-29 01:01:01
        assert_eq!(utc(t), (2000, 2, 29, 1, 1, 1));
    }

    #[test]
    fn timevals_round_trip() {
        for secs in [0u64, 951_782_400 + 3661, 1_700_000_000, 4_102_444_799] {
            let t = UNIX_EPOCH + Duration::from_secs(secs);
            let (y, mo, d, h, mi, s) = utc(t);
            let text = format!("{y:04}{mo:02}{d:02}{h:02}{mi:02}{s:02}");
            assert_eq!(parse_timeval(&text), Some(t), "{text}");
        }
        for bad in [
            "",
            "2024",
            "20240230000000",
            "20241301000000",
            "20240101240000",
            "2024010100000x",
            "202401010000000",
        ] {
            assert_eq!(parse_timeval(bad), None, "{bad}");
        }
    }

    #[test]
    fn key_fact_only_while_the_file_is_as_recorded() {
        use super::super::store::KeyState;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"abc").unwrap();
        let md = std::fs::metadata(&p).unwrap();
        let mut m = FileMeta::stamped(
            Some(crate::key::Key(0x352441C2)),
            KeyState::Complete,
            0x352441C2,
            3,
            Some(&md),
        );
        let line = mlsx_line("f", &md, Some(&m), false);
        assert!(
            line.contains("x.keystate=complete;x.key=0x352441C2; f"),
            "{line}"
        );
        m.len = 2;
        let line = mlsx_line("f", &md, Some(&m), false);
        assert!(!line.contains("x.key="), "{line}");
        assert!(line.contains("x.keystate=complete;"), "{line}");
        m.len = 3;
        m.key = None;
        assert!(!mlsx_line("f", &md, Some(&m), false).contains("x.key="));
    }
}
