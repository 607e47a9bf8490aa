pub mod pureftpd;
