pub mod core_rig;
pub mod jobs;
pub mod keyftpd;
pub mod pureftpd;
