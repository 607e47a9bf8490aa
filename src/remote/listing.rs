//! Directory listings: MLSD/MLST facts (RFC 3659) and `ls -l`-style LIST
//! lines, parsed into `RemoteEntry`. Pure; a line that cannot be parsed is
//! skipped rather than failing the whole listing, and `.`/`..` never appear.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::RemoteEntry;
use suppaftp::list::ListParser;

/// Parses one MLSD line (`type=file;size=3;modify=20240101120000; name`).
/// MLST lines (with a leading space and a full path) work too: the name is
/// the last path component.
pub fn parse_mlsx_line(line: &str) -> Option<RemoteEntry> {
    let line = line.trim_end_matches(['\r', '\n']);
    let line = line.strip_prefix(' ').unwrap_or(line);
    let (facts, name) = line.split_once(' ')?;
    let name = base_name(name)?;
    let mut kind = None;
    let mut size = None;
    let mut mtime = None;
    let mut mode = None;
    for fact in facts.split(';').filter(|f| !f.is_empty()) {
        let Some((k, v)) = fact.split_once('=') else {
            continue;
        };
        match k.to_ascii_lowercase().as_str() {
            "type" => kind = Some(v.to_ascii_lowercase()),
            "size" | "sizd" => size = v.parse::<u64>().ok(),
            "modify" => mtime = parse_mdtm(v),
            "unix.mode" => mode = u32::from_str_radix(v, 8).ok().filter(|m| *m <= 0o7777),
            _ => {}
        }
    }
    let is_dir = match kind.as_deref() {
        Some("dir") => true,
        Some("cdir") | Some("pdir") => return None,
        Some(t) if t.starts_with("os.unix=slink") => false,
        _ => false,
    };
    Some(RemoteEntry {
        name,
        is_dir,
        size: size.unwrap_or(0),
        mtime,
        mode,
    })
}

/// The facts of one MLST line that verify an upload against keyftpd:
/// `type`, `size`, `x.keystate` and `x.key` (see keyftp(7)).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyFacts {
    pub is_file: bool,
    pub size: Option<u64>,
    /// `x.keystate`, lower case (`partial` or `complete`).
    pub keystate: Option<String>,
    /// `x.key`; `None` when absent or malformed.
    pub key: Option<u32>,
}

/// Reads the [`KeyFacts`] of one MLST/MLSD line; `None` when the line has
/// no facts at all (or names one of them twice).
pub fn parse_key_facts(line: &str) -> Option<KeyFacts> {
    parse_key_entry(line).map(|(f, _)| f)
}

/// Reads the [`KeyFacts`] and the name of one MLST/MLSD entry line
/// (` facts; name`: the facts end at the first space, the name is the rest,
/// spaces and `;` included). `None` when it has no facts or names `type`,
/// `size`, `x.keystate` or `x.key` twice (which of the two would be meant?).
pub fn parse_key_entry(line: &str) -> Option<(KeyFacts, &str)> {
    let line = line.trim_end_matches(['\r', '\n']);
    let line = line.strip_prefix(' ').unwrap_or(line);
    let (facts, name) = line.split_once(' ')?;
    let mut out = KeyFacts::default();
    let mut seen = [false; 4];
    for fact in facts.split(';').filter(|f| !f.is_empty()) {
        let Some((k, v)) = fact.split_once('=') else {
            continue;
        };
        let k = k.to_ascii_lowercase();
        let slot = match k.as_str() {
            "type" => 0,
            "size" => 1,
            "x.keystate" => 2,
            "x.key" => 3,
            _ => continue,
        };
        if std::mem::replace(&mut seen[slot], true) {
            return None;
        }
        match slot {
            0 => out.is_file = v.eq_ignore_ascii_case("file"),
            1 => out.size = v.parse::<u64>().ok(),
            2 => out.keystate = Some(v.to_ascii_lowercase()),
            _ => out.key = parse_key_fact(v),
        }
    }
    Some((out, name))
}

/// The value of an `x.key` fact: exactly `0x` and eight hex digits
/// (keyftp(7)). Anything else, such as `0x00`, which is the "no key" form
/// of the KEY NULL reply, or a short or signed number, is no key.
pub fn parse_key_fact(v: &str) -> Option<u32> {
    let digits = v.strip_prefix("0x")?;
    if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(digits, 16).ok()
}

/// Parses one LIST line, Unix (`-rw-r--r-- 1 u g 12 Jan 1 10:00 name`) or DOS style.
pub fn parse_list_line(line: &str) -> Option<RemoteEntry> {
    let line = line.trim_end_matches(['\r', '\n']);
    if line.is_empty() || line.starts_with("total ") {
        return None;
    }
    let f = ListParser::parse_posix(line)
        .or_else(|_| ListParser::parse_dos(line))
        .ok()?;
    let name = base_name(f.name())?;
    Some(RemoteEntry {
        name,
        is_dir: f.is_directory(),
        size: f.size() as u64,
        mtime: Some(f.modified()),
        mode: line.get(..10).and_then(parse_perm_string),
    })
}

/// The permission bits of an `ls -l` mode string (`-rwsr-x--T`).
pub fn parse_perm_string(s: &str) -> Option<u32> {
    let b = s.as_bytes();
    if b.len() != 10 || !b"-dlcbps".contains(&b[0]) {
        return None;
    }
    let mut mode = 0u32;
    for (i, c) in b[1..].iter().enumerate() {
        let bit = 1 << (8 - i);
        let (set, special) = match (i % 3, c) {
            (_, b'-') => (false, false),
            (0, b'r') | (1, b'w') | (2, b'x') => (true, false),
            (2, b's') | (2, b't') => (true, true),
            (2, b'S') | (2, b'T') => (false, true),
            _ => return None,
        };
        if set {
            mode |= bit;
        }
        if special {
            // setuid, setgid, sticky: for the user, group, other triplets.
            mode |= 0o4000 >> (i / 3);
        }
    }
    Some(mode)
}

/// The last component of `name`; `None` for `.`, `..` or an empty name.
fn base_name(name: &str) -> Option<String> {
    let name = name.trim_end_matches('/');
    let base = name.rsplit('/').next().unwrap_or(name);
    if base.is_empty() || base == "." || base == ".." {
        return None;
    }
    Some(base.to_string())
}

/// Parses an MDTM/`modify=` timestamp `YYYYMMDDHHMMSS[.sss]` (UTC).
pub fn parse_mdtm(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    let (main, frac) = s.split_once('.').unwrap_or((s, ""));
    if main.len() != 14 || !main.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = |a: usize, b: usize| main.get(a..b).and_then(|x| x.parse::<i64>().ok());
    let (y, mo, d) = (n(0, 4)?, n(4, 6)?, n(6, 8)?);
    let (h, mi, se) = (n(8, 10)?, n(10, 12)?, n(12, 14)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let days = days_from_civil(y, mo, d);
    let secs = days * 86400 + h * 3600 + mi * 60 + se;
    let secs = u64::try_from(secs).ok()?;
    let millis = frac
        .get(..frac.len().min(3))
        .and_then(|f| format!("{f:0<3}").parse::<u64>().ok())
        .unwrap_or(0);
    Some(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn modes_from_mlsd_and_list() {
        let e =
            parse_mlsx_line("type=file;size=6;modify=20010101000000;UNIX.mode=0600; f").unwrap();
        assert_eq!(e.mode, Some(0o600));
        let e = parse_mlsx_line("type=file;size=6;unix.mode=99; f").unwrap();
        assert_eq!(e.mode, None);
        let e = parse_list_line("-rw-------    1 65534 nogroup  6 Jan  1  2001 f.txt").unwrap();
        assert_eq!(e.mode, Some(0o600));
        for (s, m) in [
            ("-rw-r--r--", Some(0o644)),
            ("drwxr-xr-x", Some(0o755)),
            ("-rwsr-x--T", Some(0o5750)),
            ("-rwSr-sr-t", Some(0o7655)),
            ("----------", Some(0)),
            ("-rw-r--r-", None),
            ("xrw-r--r--", None),
            ("-rq-r--r--", None),
        ] {
            assert_eq!(parse_perm_string(s), m, "{s}");
        }
    }

    #[test]
    fn mlsd_lines() {
        let e = parse_mlsx_line("type=file;size=1234;modify=20240102030405; a b.txt").unwrap();
        assert_eq!(e.name, "a b.txt");
        assert!(!e.is_dir);
        assert_eq!(e.size, 1234);
        assert_eq!(
            e.mtime,
            Some(UNIX_EPOCH + Duration::from_secs(1_704_164_645))
        );
        let d = parse_mlsx_line("Type=dir;Modify=20240102030405.5; sub").unwrap();
        assert!(d.is_dir);
        assert!(parse_mlsx_line("type=cdir; .").is_none());
        assert!(parse_mlsx_line("type=pdir; ..").is_none());
        let m = parse_mlsx_line(" type=file;size=7; /x/y/z.bin").unwrap();
        assert_eq!(m.name, "z.bin");
        assert!(parse_mlsx_line("nonsense").is_none());
        let k = parse_mlsx_line("type=file;size=9;x.keystate=partial; p.bin").unwrap();
        assert_eq!((k.name.as_str(), k.size), ("p.bin", 9));
    }

    #[test]
    fn key_facts() {
        let f = parse_key_facts(
            " type=file;size=3;modify=20240101000000;perm=adfrw;x.keystate=complete;x.key=0x352441C2; /a b",
        )
        .unwrap();
        assert_eq!(
            f,
            KeyFacts {
                is_file: true,
                size: Some(3),
                keystate: Some("complete".into()),
                key: Some(0x352441C2),
            }
        );
        let f = parse_key_facts("Type=file;Size=9;X.KeyState=Partial;x.key=junk; p").unwrap();
        assert_eq!((f.keystate.as_deref(), f.key), (Some("partial"), None));
        let d = parse_key_facts("type=dir;x.key=0x1; d").unwrap();
        assert!(!d.is_file);
        assert!(parse_key_facts("nospace").is_none());
    }

    #[test]
    fn list_lines() {
        let e =
            parse_list_line("-rw-r--r--    1 1000     1000         5 Jan  1 10:00 hello world.txt")
                .unwrap();
        assert_eq!(e.name, "hello world.txt");
        assert_eq!(e.size, 5);
        assert!(!e.is_dir);
        let d = parse_list_line("drwxr-xr-x    2 0 0 4096 Mar  3  2020 dir").unwrap();
        assert!(d.is_dir);
        assert!(parse_list_line("drwxr-xr-x 2 0 0 4096 Mar 3 2020 .").is_none());
        assert!(parse_list_line("total 12").is_none());
        assert!(parse_list_line("garbage").is_none());
    }

    #[test]
    fn mdtm() {
        assert_eq!(parse_mdtm("19700101000000"), Some(UNIX_EPOCH));
        assert!(parse_mdtm("2024").is_none());
        assert!(parse_mdtm("20241301000000").is_none());
    }

    proptest! {
        #[test]
        fn never_panics(s in ".{0,200}") {
            let _ = parse_mlsx_line(&s);
            let _ = parse_key_facts(&s);
            let _ = parse_list_line(&s);
            let _ = parse_mdtm(&s);
        }
    }
}
