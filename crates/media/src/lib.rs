//! Everything about running FFmpeg: the argv builder, the `-progress` reader,
//! ffprobe, and the process wrapper every external tool runs under.

pub mod argv;
pub mod frames;
pub mod manifests;
pub mod outputs;
pub mod probe;
pub mod process;
pub mod progress;
pub mod sandbox;
