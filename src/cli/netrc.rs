//! A small ~/.netrc reader: `machine`, `login`, `password`, `default`;
//! `macdef` bodies and unknown tokens are skipped.

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetrcEntry {
    pub login: Option<String>,
    pub password: Option<String>,
}

/// The entry for `host` (and `user`, when given): the first `machine host`
/// whose login matches (or has no login), else `default`.
pub fn lookup(text: &str, host: &str, user: Option<&str>) -> Option<NetrcEntry> {
    let mut entries: Vec<(Option<String>, NetrcEntry)> = Vec::new();
    let mut lines = text.lines();
    let mut tokens: Vec<String> = Vec::new();
    // Tokenise, dropping macdef bodies (they run to the next empty line).
    #[allow(clippy::while_let_on_iterator)] // `lines` is also advanced inside (macdef)
    while let Some(line) = lines.next() {
        let mut words = line.split_whitespace().peekable();
        while let Some(w) = words.next() {
            if w.starts_with('#') && tokens.is_empty() {
                break;
            }
            if w == "macdef" {
                for l in lines.by_ref() {
                    if l.trim().is_empty() {
                        break;
                    }
                }
                break;
            }
            tokens.push(w.to_string());
        }
    }
    let mut it = tokens.into_iter();
    let mut cur: Option<(Option<String>, NetrcEntry)> = None;
    while let Some(t) = it.next() {
        match t.as_str() {
            "machine" => {
                entries.extend(cur.take());
                cur = Some((Some(it.next().unwrap_or_default()), NetrcEntry::default()));
            }
            "default" => {
                entries.extend(cur.take());
                cur = Some((None, NetrcEntry::default()));
            }
            "login" => {
                if let Some((_, e)) = cur.as_mut() {
                    e.login = it.next();
                }
            }
            "password" => {
                if let Some((_, e)) = cur.as_mut() {
                    e.password = it.next();
                }
            }
            "account" => {
                it.next();
            }
            _ => {}
        }
    }
    entries.extend(cur);
    let fits = |e: &NetrcEntry| match (user, &e.login) {
        (Some(u), Some(l)) => u == l,
        _ => true,
    };
    entries
        .iter()
        .find(|(m, e)| m.as_deref() == Some(host) && fits(e))
        .or_else(|| entries.iter().find(|(m, e)| m.is_none() && fits(e)))
        .map(|(_, e)| e.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NETRC: &str = "\
# comment line
machine ftp.example.org login alice password s3cret
machine ftp.example.org
  login bob
  password hunter2
macdef init
  cd /pub
  binary

machine other login carol password x
default login anonymous password me@home
";

    #[test]
    fn picks_machine_and_login() {
        let e = lookup(NETRC, "ftp.example.org", None).unwrap();
        assert_eq!(e.login.as_deref(), Some("alice"));
        assert_eq!(e.password.as_deref(), Some("s3cret"));
        let e = lookup(NETRC, "ftp.example.org", Some("bob")).unwrap();
        assert_eq!(e.password.as_deref(), Some("hunter2"));
        let e = lookup(NETRC, "other", None).unwrap();
        assert_eq!(e.login.as_deref(), Some("carol"));
    }

    #[test]
    fn falls_back_to_default_or_none() {
        let e = lookup(NETRC, "nowhere", None).unwrap();
        assert_eq!(e.login.as_deref(), Some("anonymous"));
        assert_eq!(lookup("machine a login b password c", "z", None), None);
        assert_eq!(lookup("", "z", None), None);
        assert_eq!(lookup("machine", "z", None), None);
    }
}
