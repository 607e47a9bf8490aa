//! Mounting and unmounting the FUSE filesystem without fuser's mount code.
//!
//! fuser 0.18 mounts with the type `fuse` whatever the subtype, and at the
//! end of its session it unmounts again a filesystem `fusermount3 -u` has
//! already unmounted (logging `Failed to umount filesystem: Invalid
//! argument`). keyfs therefore mounts by itself, as libfuse does: as root
//! with mount(2) and the type `fuse.keyfs`, otherwise (or when mount(2) is
//! refused) through the setuid `fusermount3` with `subtype=keyfs`, which
//! hands back the `/dev/fuse` descriptor over a socket. The descriptor then
//! goes to [`fuser::Session::from_fd`], which never unmounts by itself.
//! `/proc/mounts` shows `URL MOUNTPOINT fuse.keyfs` either way.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};

/// The filesystem's subtype: the type is `fuse.keyfs`.
pub const SUBTYPE: &str = "keyfs";

/// What the kernel mount gets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MountSpec {
    /// Shown as the source in /proc/mounts (the URL; it never holds a password).
    pub fsname: String,
    pub read_only: bool,
    pub noatime: bool,
    pub noexec: bool,
    pub allow_other: bool,
    pub default_permissions: bool,
    /// Through fusermount3, which unmounts when the daemon dies.
    pub auto_unmount: bool,
}

/// The mount: the `/dev/fuse` descriptor for the session, and, with
/// `auto_unmount`, the socket that keeps fusermount3 waiting.
pub struct Mounted {
    pub fd: OwnedFd,
    pub keepalive: Option<UnixStream>,
}

/// `,` separates mount options and `\` escapes in fusermount3's parser: keep
/// them out of the source name.
pub fn clean_fsname(s: &str) -> String {
    s.replace('%', "%25")
        .replace(',', "%2C")
        .replace('\\', "%5C")
}

fn cstr(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))
}

/// Mounts on `mountpoint` (canonical, an existing directory).
pub fn mount(mountpoint: &Path, spec: &MountSpec) -> io::Result<Mounted> {
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if root && !spec.auto_unmount {
        match mount_sys(mountpoint, spec) {
            Ok(fd) => {
                return Ok(Mounted {
                    fd,
                    keepalive: None,
                })
            }
            // In a user namespace or a container without the capability.
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {}
            Err(e) => return Err(e),
        }
    }
    mount_fusermount(mountpoint, spec)
}

/// mount(2) with a fresh `/dev/fuse` descriptor (what libfuse does as root).
fn mount_sys(mountpoint: &Path, spec: &MountSpec) -> io::Result<OwnedFd> {
    use std::os::unix::fs::MetadataExt;
    let mode = std::fs::metadata(mountpoint)?.mode() & libc::S_IFMT;
    let dev = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")?;
    let fd = OwnedFd::from(dev);
    // SAFETY: getuid/getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let mut data = format!(
        "fd={},rootmode={:o},user_id={uid},group_id={gid}",
        fd.as_raw_fd(),
        mode
    );
    if spec.allow_other {
        data.push_str(",allow_other");
    }
    if spec.default_permissions {
        data.push_str(",default_permissions");
    }
    let mut flags = libc::MS_NOSUID | libc::MS_NODEV;
    if spec.read_only {
        flags |= libc::MS_RDONLY;
    }
    if spec.noatime {
        flags |= libc::MS_NOATIME;
    }
    if spec.noexec {
        flags |= libc::MS_NOEXEC;
    }
    let src = CString::new(spec.fsname.as_str())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in fsname"))?;
    let ty = CString::new(format!("fuse.{SUBTYPE}")).unwrap_or_default();
    let target = cstr(mountpoint)?;
    let data = CString::new(data).unwrap_or_default();
    // SAFETY: every pointer is a valid NUL-terminated string for the call.
    let r = unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            ty.as_ptr(),
            flags,
            data.as_ptr().cast(),
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// The `-o` list for fusermount3.
fn fusermount_opts(spec: &MountSpec) -> String {
    let mut o = vec![
        if spec.read_only { "ro" } else { "rw" }.to_string(),
        "nosuid".into(),
        "nodev".into(),
        format!("subtype={SUBTYPE}"),
        format!("fsname={}", spec.fsname),
    ];
    for (on, name) in [
        (spec.noatime, "noatime"),
        (spec.noexec, "noexec"),
        (spec.allow_other, "allow_other"),
        (spec.default_permissions, "default_permissions"),
        (spec.auto_unmount, "auto_unmount"),
    ] {
        if on {
            o.push(name.into());
        }
    }
    o.join(",")
}

/// Runs `fusermount3 -o OPTS -- MOUNTPOINT` with `_FUSE_COMMFD` and takes
/// the descriptor it sends back (SCM_RIGHTS).
fn mount_fusermount(mountpoint: &Path, spec: &MountSpec) -> io::Result<Mounted> {
    let (ours, theirs) = UnixStream::pair()?;
    let their_fd = theirs.as_raw_fd();
    let mut cmd = Command::new("fusermount3");
    cmd.arg("-o")
        .arg(fusermount_opts(spec))
        .arg("--")
        .arg(mountpoint)
        .env("_FUSE_COMMFD", their_fd.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: only fcntl on a descriptor that stays open until the exec.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(move || {
            let fl = libc::fcntl(their_fd, libc::F_GETFD);
            if fl < 0 || libc::fcntl(their_fd, libc::F_SETFD, fl & !libc::FD_CLOEXEC) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot run fusermount3 (is fuse3 installed?): {e}"),
        )
    })?;
    drop(theirs);
    let got = receive_fd(&ours);
    if spec.auto_unmount && got.is_ok() {
        // fusermount3 stays to unmount when this socket closes (our exit).
        return got.map(|fd| Mounted {
            fd,
            keepalive: Some(ours),
        });
    }
    drop(ours);
    let out = child.wait_with_output()?;
    match got {
        Ok(fd) if out.status.success() => Ok(Mounted {
            fd,
            keepalive: None,
        }),
        Ok(_) | Err(_) => {
            let msg = String::from_utf8_lossy(&out.stderr);
            let msg = msg.trim().trim_start_matches("fusermount3: ");
            Err(io::Error::other(if msg.is_empty() {
                format!("fusermount3 failed ({})", out.status)
            } else {
                msg.to_string()
            }))
        }
    }
}

/// One descriptor from an SCM_RIGHTS message.
fn receive_fd(sock: &UnixStream) -> io::Result<OwnedFd> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    // Room for one cmsghdr with one int, suitably aligned.
    let mut space = [0u64; 8];
    // SAFETY: msghdr is plain data; every pointer set below outlives recvmsg.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = space.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&space) as _;
    let n = loop {
        // SAFETY: `msg` describes valid buffers.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        }
        break n;
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: CMSG_* walk the control buffer recvmsg filled.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        if !c.is_null() && (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS
        {
            let fd = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>());
            if fd >= 0 {
                return Ok(OwnedFd::from_raw_fd(fd));
            }
        }
    }
    Err(io::Error::other("fusermount3 sent no descriptor"))
}

/// Unmounts `mountpoint`; `lazy` detaches it even while files are open.
/// As root by umount2(2), otherwise by `fusermount3 -u`.
pub fn unmount(mountpoint: &Path, lazy: bool) -> io::Result<()> {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        let target = cstr(mountpoint)?;
        let flags = if lazy { libc::MNT_DETACH } else { 0 };
        // SAFETY: a valid NUL-terminated path.
        if unsafe { libc::umount2(target.as_ptr(), flags) } == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EPERM) {
            return Err(e);
        }
    }
    let mut cmd = Command::new("fusermount3");
    cmd.arg(if lazy { "-uz" } else { "-u" })
        .arg("--")
        .arg(mountpoint)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    let out = cmd.stderr(Stdio::piped()).output()?;
    if out.status.success() {
        Ok(())
    } else {
        let msg = String::from_utf8_lossy(&out.stderr);
        Err(io::Error::other(msg.trim().to_string()))
    }
}

/// What ended [`wait_gone_or`].
#[derive(Debug, PartialEq, Eq)]
pub enum Woken {
    /// The kernel ended the connection: unmounted.
    Gone,
    /// `wakes[i]` is readable.
    Ready(usize),
    /// poll failed.
    Error,
}

/// Sleeps until the mount `fd` is gone (POLLERR/POLLHUP: unmounted) or
/// one of `wakes` is readable.
pub fn wait_gone_or(fd: &OwnedFd, wakes: &[libc::c_int]) -> Woken {
    let mut fds = vec![libc::pollfd {
        fd: fd.as_raw_fd(),
        events: 0,
        revents: 0,
    }];
    fds.extend(wakes.iter().map(|&w| libc::pollfd {
        fd: w,
        events: libc::POLLIN,
        revents: 0,
    }));
    loop {
        // SAFETY: `fds` holds fds.len() valid pollfd entries.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if n < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Woken::Error;
        }
        if fds[0].revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0 {
            return Woken::Gone;
        }
        if let Some(i) = fds[1..].iter().position(|p| p.revents != 0) {
            return Woken::Ready(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fusermount_options_carry_type_and_source() {
        let spec = MountSpec {
            fsname: clean_fsname("ftp://u@h:21/a,b"),
            read_only: true,
            allow_other: true,
            ..MountSpec::default()
        };
        let o = fusermount_opts(&spec);
        assert_eq!(
            o,
            "ro,nosuid,nodev,subtype=keyfs,fsname=ftp://u@h:21/a%2Cb,allow_other"
        );
    }
}
