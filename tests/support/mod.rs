pub mod jobs;
pub mod keyftpd;
pub mod pureftpd;
