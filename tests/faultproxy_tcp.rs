//! ftpfault's TCP mode: a plain stream (HTTP) relayed as one data
//! connection, counted, and cut after exactly N upload bytes.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;

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
