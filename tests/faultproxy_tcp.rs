//! ftpfault's TCP mode: a plain stream (HTTP) relayed as one data
//! connection, counted, and cut after exactly N upload bytes.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use keyfs::faultproxy::{FaultProxy, Faults};

#[test]
fn tcp_mode_relays_both_ways_and_cuts_at_n() {
    let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
    let up_addr = upstream.local_addr().unwrap();
    // First connection: echo; second: count what arrives.
    let server = thread::spawn(move || {
        let (mut a, _) = upstream.accept().unwrap();
        let mut buf = [0u8; 5];
        a.read_exact(&mut buf).unwrap();
        a.write_all(&buf).unwrap();
        let (mut b, _) = upstream.accept().unwrap();
        let mut got = Vec::new();
        let _ = b.read_to_end(&mut got);
        got.len()
    });
    let faults = Faults {
        cut_after: Some(1000),
        cuts: 1,
        ..Faults::default()
    };
    let proxy = FaultProxy::start_tcp("127.0.0.1:0".parse().unwrap(), up_addr, faults).unwrap();

    let mut c = TcpStream::connect(proxy.addr()).unwrap();
    c.write_all(b"hello").unwrap();
    let mut back = [0u8; 5];
    c.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"hello");
    drop(c);

    let mut c = TcpStream::connect(proxy.addr()).unwrap();
    let data = vec![7u8; 5000];
    for chunk in data.chunks(100) {
        if c.write_all(chunk).is_err() {
            break; // the reset reached us
        }
        thread::sleep(std::time::Duration::from_millis(1));
    }
    drop(c);
    let received = server.join().unwrap();
    // The first connection (5 bytes) counts toward its own total only.
    assert_eq!(
        received, 1000,
        "the server gets exactly the bytes before the cut"
    );
    let st = proxy.stats();
    assert_eq!(st.cuts, 1);
    assert_eq!(st.data_conns, 2);
}

/// Sends `n` bytes through the proxy at `addr` (starting an outage armed
/// at `n`), waits until the server has them all, and returns the
/// connection and the server's side.
fn through_to_outage(
    upstream: &TcpListener,
    addr: std::net::SocketAddr,
    n: usize,
) -> (TcpStream, TcpStream) {
    let mut c = TcpStream::connect(addr).unwrap();
    c.write_all(&vec![1u8; n]).unwrap();
    let (mut s, _) = upstream.accept().unwrap();
    let mut buf = vec![0u8; n];
    s.read_exact(&mut buf).unwrap();
    (c, s)
}

/// In an outage, a close does not cross either: the server learns of it
/// only when the link is back.
#[test]
fn tcp_mode_outage_holds_a_close_until_it_ends() {
    let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
    let faults = Faults {
        hold_after: Some(1000),
        hold_for: Duration::from_millis(1500),
        ..Faults::default()
    };
    let addr = upstream.local_addr().unwrap();
    let proxy = FaultProxy::start_tcp("127.0.0.1:0".parse().unwrap(), addr, faults).unwrap();
    let (c, mut s) = through_to_outage(&upstream, proxy.addr(), 1000);
    let t0 = Instant::now();
    drop(c);
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    assert!(
        t0.elapsed() >= Duration::from_millis(1000),
        "the close crossed the outage after {:?}",
        t0.elapsed()
    );
    assert_eq!(proxy.stats().holds, 1);
}

/// `hold_forget`: a connection open when the outage began carries nothing
/// after it, not even a close; a new one works.
#[test]
fn tcp_mode_outage_that_forgets_connections() {
    let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
    let faults = Faults {
        hold_after: Some(1000),
        hold_for: Duration::from_millis(300),
        hold_forget: true,
        ..Faults::default()
    };
    let addr = upstream.local_addr().unwrap();
    let proxy = FaultProxy::start_tcp("127.0.0.1:0".parse().unwrap(), addr, faults).unwrap();
    let (mut c, mut s) = through_to_outage(&upstream, proxy.addr(), 1000);
    thread::sleep(Duration::from_millis(600)); // the outage is over
    c.write_all(b"lost").unwrap();
    drop(c);
    s.set_read_timeout(Some(Duration::from_millis(1000)))
        .unwrap();
    let mut buf = [0u8; 16];
    let e = s
        .read(&mut buf)
        .expect_err("neither data nor a close arrives");
    assert!(
        matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{e}"
    );

    // A connection made after the outage is relayed.
    let mut c = TcpStream::connect(proxy.addr()).unwrap();
    c.write_all(b"hello").unwrap();
    let (mut s2, _) = upstream.accept().unwrap();
    let mut got = [0u8; 5];
    s2.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"hello");
    s2.write_all(b"back!").unwrap();
    c.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"back!");
}
