pub mod keyftpd;
