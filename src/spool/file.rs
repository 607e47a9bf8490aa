//! Spool data files with a running CRC-32. OWNER: fs helper.
