//! `--bwlimit` values: bytes per second with an optional binary suffix
//! (`512K`, `8M`, `1.5M`, `1G`; `KiB`/`MB`/`/s` spellings accepted).

pub fn parse_rate(s: &str) -> Result<u64, String> {
    let bad = || format!("bad rate {s:?} (expected bytes per second, e.g. 8M or 512K)");
    let t = s.trim();
    let t = t.strip_suffix("/s").unwrap_or(t);
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (num, mult) = match t.chars().last() {
        Some('k' | 'K') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m' | 'M') => (&t[..t.len() - 1], 1 << 20),
        Some('g' | 'G') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    if num.is_empty() || !num.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(bad());
    }
    let v: f64 = num.parse().map_err(|_| bad())?;
    let bytes = v * mult as f64;
    if !(1.0..=1e15).contains(&bytes) {
        return Err(bad());
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes() {
        assert_eq!(parse_rate("8M"), Ok(8 << 20));
        assert_eq!(parse_rate("512K"), Ok(512 << 10));
        assert_eq!(parse_rate("512k"), Ok(512 << 10));
        assert_eq!(parse_rate("1000"), Ok(1000));
        assert_eq!(parse_rate("1.5M"), Ok(3 << 19));
        assert_eq!(parse_rate("2G"), Ok(2 << 30));
        assert_eq!(parse_rate("4MiB/s"), Ok(4 << 20));
        assert_eq!(parse_rate("100KB"), Ok(100 << 10));
    }

    #[test]
    fn rejects() {
        for s in ["", "M", "0", "-1K", "8X", "1e3", "8 M M", "0.0001"] {
            assert!(parse_rate(s).is_err(), "{s}");
        }
    }
}
