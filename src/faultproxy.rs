//! A fault-injecting FTP proxy for tests (used by the `ftpfault` binary). OWNER: harness helper.
