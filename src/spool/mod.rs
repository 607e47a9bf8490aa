//! The local spool directory: data files being written or waiting for upload
//! (`file`, owned by the fs work) and the uploader's journal (`journal`,
//! owned by the engine work), the `pool` of recycled empty files both take
//! new files from instead of creating and deleting them, and the `syncer`
//! that commits closed files to disk in batches, off the close path; `boot`
//! tells a restart after a daemon crash from one after a machine reset;
//! `record` is the format of one job's journal record.
pub mod boot;
pub mod file;
pub mod journal;
pub mod pool;
pub mod record;
pub mod syncer;
