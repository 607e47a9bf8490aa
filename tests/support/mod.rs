pub mod jobs;
pub mod pureftpd;
