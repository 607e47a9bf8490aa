//! `-o` mount options: every `keyfs mount` flag has one (`spool=DIR`,
//! `bwlimit=RATE`, `workers=N`, `password_file=FILE`, `resume=POLICY`,
//! `foreground`, `tls=require`, `ca_file=FILE`, `pin_sha256=HEX`), next to the FUSE ones and the generic ones `mount(8)`
//! and fstab pass along (`_netdev`, `nofail`, `defaults`, ...), which are
//! accepted and ignored. An unknown option is refused with its name, so a
//! typo in fstab does not mount with a default silently.

use std::path::PathBuf;

use super::fusemount::MountSpec;
use super::{rate, MountArgs, ResumeArg};

/// What the `-o` lists say beyond the flags they set in [`MountArgs`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    pub spec: MountSpec,
    /// Whether `fsname=` named the source (else the URL is used).
    pub fsname_given: bool,
    pub acl: Acl,
    pub writeback: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Acl {
    #[default]
    Owner,
    All,
    RootAndOwner,
}

/// Generic options of mount(8), fstab and mount.fuse3, with no meaning here.
const IGNORED: &[&str] = &[
    "defaults",
    "auto",
    "noauto",
    "user",
    "users",
    "nouser",
    "owner",
    "group",
    "_netdev",
    "nofail",
    "relatime",
    "strictatime",
    "nodiratime",
    "async",
    "exec",
    "suid",
    "nosuid",
    "dev",
    "nodev",
    "atime",
    "loud",
    "silent",
];

/// Applies the `-o` lists in `args.options` to `args` (the option wins
/// over the flag) and returns the rest.
pub fn apply(args: &mut MountArgs) -> Result<Parsed, String> {
    let mut p = Parsed::default();
    p.spec.noatime = true;
    let opts: Vec<String> = args
        .options
        .iter()
        .flat_map(|s| s.split(','))
        .map(|o| o.trim().to_string())
        .filter(|o| !o.is_empty())
        .collect();
    for o in &opts {
        let (name, value) = match o.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (o.as_str(), None),
        };
        let need =
            || value.ok_or_else(|| format!("mount option {name} needs a value ({name}=...)"));
        let none = || match value {
            Some(_) => Err(format!("mount option {name} takes no value")),
            None => Ok(()),
        };
        match name {
            "spool" => args.spool = Some(PathBuf::from(need()?)),
            "bwlimit" => {
                args.bwlimit = Some(rate::parse_rate(need()?).map_err(|e| format!("bwlimit: {e}"))?)
            }
            "workers" => {
                let n: u16 = need()?
                    .parse()
                    .ok()
                    .filter(|n| (1..=64).contains(n))
                    .ok_or_else(|| "mount option workers must be 1 to 64".to_string())?;
                args.workers = n;
            }
            "password_file" | "password-file" => args.password_file = Some(PathBuf::from(need()?)),
            "tls" => match need()? {
                "require" => args.tls = Some("require".into()),
                v => return Err(format!("mount option tls={v}: only tls=require is known")),
            },
            "ca_file" | "ca-file" => args.ca_file = Some(PathBuf::from(need()?)),
            "pin_sha256" | "pin-sha256" => args.pin_sha256 = Some(need()?.to_string()),
            "resume" => {
                args.resume = match need()? {
                    "safe" => ResumeArg::Safe,
                    "trust-size" | "trust_size" => ResumeArg::TrustSize,
                    v => {
                        return Err(format!(
                            "mount option resume={v}: expected safe or trust-size"
                        ))
                    }
                }
            }
            "foreground" => {
                none()?;
                args.foreground = true
            }
            "allow_other" => p.acl = Acl::All,
            "allow_root" => p.acl = Acl::RootAndOwner,
            "ro" => p.spec.read_only = true,
            "rw" => p.spec.read_only = false,
            "noatime" => p.spec.noatime = true,
            "noexec" => p.spec.noexec = true,
            "auto_unmount" => p.spec.auto_unmount = true,
            "default_permissions" => p.spec.default_permissions = true,
            "writeback" | "writeback_cache" => p.writeback = true,
            "fsname" => {
                p.spec.fsname = need()?.to_string();
                p.fsname_given = true;
            }
            // Passed by mount.fuse3 (the type) and by some fstab tools.
            "subtype" if value == Some(super::fusemount::SUBTYPE) => {}
            n if IGNORED.contains(&n) => {}
            n if n.starts_with("x-") || n == "comment" => {}
            n => return Err(format!("unknown mount option: {n}")),
        }
        if name != "fsname"
            && name != "spool"
            && name != "password_file"
            && name != "ca_file"
            && o.contains('\0')
        {
            return Err(format!("bad mount option {o:?}"));
        }
    }
    if p.spec.auto_unmount {
        p.spec.allow_other = true;
        if p.acl == Acl::Owner {
            p.acl = Acl::RootAndOwner;
        }
    }
    p.spec.allow_other |= p.acl != Acl::Owner;
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(o: &str) -> MountArgs {
        let c = super::super::Cli::try_parse_from(["keyfs", "mount", "ftp://h/", "/m", "-o", o])
            .unwrap();
        match c.cmd {
            super::super::Command::Mount(m) => m,
            _ => panic!(),
        }
    }

    #[test]
    fn every_flag_has_an_o_form() {
        let mut a = args(
            "_netdev,spool=/var/spool/keyfs,bwlimit=8M,password_file=/etc/keyfs.pass,\
             workers=2,resume=trust-size,foreground,ro,allow_other,writeback,x-systemd.automount",
        );
        let p = apply(&mut a).unwrap();
        assert_eq!(a.spool, Some(PathBuf::from("/var/spool/keyfs")));
        assert_eq!(a.bwlimit, Some(8 << 20));
        assert_eq!(a.password_file, Some(PathBuf::from("/etc/keyfs.pass")));
        assert_eq!(a.workers, 2);
        assert_eq!(a.resume, ResumeArg::TrustSize);
        assert!(a.foreground);
        assert!(p.spec.read_only && p.spec.allow_other && p.writeback);
        assert_eq!(p.acl, Acl::All);
    }

    #[test]
    fn tls_options() {
        let mut a = args("tls=require,ca_file=/etc/nas.pem,ro");
        apply(&mut a).unwrap();
        assert_eq!(a.tls.as_deref(), Some("require"));
        assert_eq!(a.ca_file, Some(PathBuf::from("/etc/nas.pem")));
        let mut a = args("pin_sha256=ab12");
        apply(&mut a).unwrap();
        assert_eq!(a.pin_sha256.as_deref(), Some("ab12"));
        let e = apply(&mut args("tls=maybe")).unwrap_err();
        assert!(e.contains("tls=maybe"), "{e}");
    }

    #[test]
    fn unknown_options_are_refused_by_name() {
        let e = apply(&mut args("rw,bwlimt=8M")).unwrap_err();
        assert_eq!(e, "unknown mount option: bwlimt");
        assert!(apply(&mut args("workers=0")).is_err());
        assert!(apply(&mut args("spool"))
            .unwrap_err()
            .contains("needs a value"));
        assert!(apply(&mut args("resume=maybe")).is_err());
        let p = apply(&mut args("auto_unmount")).unwrap();
        assert_eq!(p.acl, Acl::RootAndOwner);
    }
}
