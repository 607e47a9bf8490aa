//! The filesystem: a core testable without FUSE, and a thin fuser adapter.
//! OWNER: fs helper.
