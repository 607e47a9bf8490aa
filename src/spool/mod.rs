//! The local spool directory: data files being written or waiting for upload
//! (`file`, owned by the fs work) and the uploader's journal (`journal`,
//! owned by the engine work), and the `syncer` that commits closed files to
//! disk in batches, off the close path.
pub mod file;
pub mod journal;
pub mod syncer;
