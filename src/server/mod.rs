//! keyftpd: the FTP server with the KEY extension. OWNER: server helper.
