pub mod core_rig;
pub mod http;
pub mod jobs;
pub mod keyftpd;
pub mod pureftpd;
