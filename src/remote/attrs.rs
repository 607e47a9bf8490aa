//! A file's time and mode on the server: `MFMT` (draft-somers-ftp-mfxx,
//! listed in FEAT by pure-ftpd, ProFTPD, pyftpdlib) and `SITE CHMOD` (not
//! listed in FEAT anywhere; tried, and remembered when the server does not
//! know it).

use std::time::{SystemTime, UNIX_EPOCH};

use super::{RemoteError, Session};

/// What became of a request to set an attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    Done,
    /// The server has no command for it (no MFMT in FEAT; SITE CHMOD
    /// answered 500/502/504): nothing changed.
    Unsupported,
}

/// `YYYYMMDDHHMMSS` (UTC) of `t`, whole seconds rounded down; `None`
/// before 1970 or past year 9999.
pub fn format_mfmt_time(t: SystemTime) -> Option<String> {
    let secs = t.duration_since(UNIX_EPOCH).ok()?.as_secs();
    let days = i64::try_from(secs / 86_400).ok()?;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    if y > 9999 {
        return None;
    }
    Some(format!(
        "{y:04}{m:02}{d:02}{:02}{:02}{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    ))
}

/// The proleptic Gregorian date of a day count since 1970-01-01
/// (H. Hinnant's algorithm, the inverse of `listing::days_from_civil`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

impl Session {
    /// `MFMT YYYYMMDDHHMMSS path`: sets the modification time of `path`
    /// (whole seconds). `Unsupported` when FEAT lists no MFMT, or for a
    /// time MFMT cannot express (before 1970).
    pub fn set_mtime(&mut self, path: &str, t: SystemTime) -> Result<Applied, RemoteError> {
        if !self.features.mfmt {
            return Ok(Applied::Unsupported);
        }
        let Some(stamp) = format_mfmt_time(t) else {
            return Ok(Applied::Unsupported);
        };
        let abs = self.abs(path)?;
        self.command(&format!("MFMT {stamp} {abs}"), &[213, 200, 250])?;
        Ok(Applied::Done)
    }

    /// `SITE CHMOD <octal> path`. `Unsupported` when the server does not
    /// know the command (500/502/504, or SITE itself unknown): remembered
    /// for this session. Other refusals (550 permission) are errors.
    pub fn chmod(&mut self, path: &str, mode: u32) -> Result<Applied, RemoteError> {
        if self.no_site_chmod {
            return Ok(Applied::Unsupported);
        }
        let abs = self.abs(path)?;
        match self.command(
            &format!("SITE CHMOD {:o} {abs}", mode & 0o7777),
            &[200, 250],
        ) {
            Ok(_) => Ok(Applied::Done),
            Err(RemoteError::Reply {
                code: 500 | 502 | 504,
                ..
            }) => {
                self.no_site_chmod = true;
                Ok(Applied::Unsupported)
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::listing::parse_mdtm;
    use std::time::Duration;

    #[test]
    fn mfmt_times() {
        let at = |s| UNIX_EPOCH + Duration::from_secs(s);
        assert_eq!(format_mfmt_time(at(0)).as_deref(), Some("19700101000000"));
        assert_eq!(
            format_mfmt_time(at(978_307_200)).as_deref(),
            Some("20010101000000")
        );
        // Sub-second parts are dropped (rounded down), as `stat` shows seconds.
        assert_eq!(
            format_mfmt_time(at(951_782_400) + Duration::from_millis(999)).as_deref(),
            Some("20000229000000")
        );
        assert_eq!(format_mfmt_time(UNIX_EPOCH - Duration::from_secs(1)), None);
        for s in [0u64, 59, 86_399, 951_868_799, 1_700_000_000, 4_102_444_800] {
            let f = format_mfmt_time(at(s)).unwrap();
            assert_eq!(parse_mdtm(&f), Some(at(s)), "{f}");
        }
    }
}
