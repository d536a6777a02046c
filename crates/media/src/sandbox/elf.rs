//! The dynamic loader a binary names (its ELF `PT_INTERP`): besides the
//! binary itself, the one file a sandboxed tool may execute, since the
//! kernel opens it for execution on the tool's behalf.

use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

const PT_INTERP: u32 = 3;

/// The loader's canonical path; `None` for a static binary or a non-ELF file.
pub fn interpreter(binary: &Path) -> io::Result<Option<PathBuf>> {
    let mut file = std::fs::File::open(binary)?;
    let mut header = [0u8; 64];
    if file.read_exact(&mut header).is_err() || &header[..4] != b"\x7fELF" {
        return Ok(None);
    }
    // 64-bit little-endian only: the sandbox kills any other ABI anyway.
    if header[4] != 2 || header[5] != 1 {
        return Ok(None);
    }
    let u16_at = |b: &[u8], at: usize| u16::from_le_bytes([b[at], b[at + 1]]);
    let u32_at = |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
    let u64_at = |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
    let phoff = u64_at(&header, 32);
    let phentsize = u16_at(&header, 54) as usize;
    let phnum = u16_at(&header, 56) as usize;
    if phentsize < 56 || phnum > 256 {
        return Ok(None);
    }
    let mut table = vec![0u8; phentsize * phnum];
    file.seek(SeekFrom::Start(phoff))?;
    file.read_exact(&mut table)?;
    for entry in table.chunks(phentsize) {
        if u32_at(entry, 0) != PT_INTERP {
            continue;
        }
        let (offset, size) = (u64_at(entry, 8), u64_at(entry, 32) as usize);
        if size == 0 || size > 4096 {
            return Ok(None);
        }
        let mut name = vec![0u8; size];
        file.seek(SeekFrom::Start(offset))?;
        file.read_exact(&mut name)?;
        let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
        use std::os::unix::ffi::OsStrExt;
        let path = Path::new(std::ffi::OsStr::from_bytes(&name[..end]));
        return std::fs::canonicalize(path).map(Some);
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dynamic_binary_names_its_loader() {
        let loader = interpreter(Path::new("/bin/sh")).unwrap().unwrap();
        let name = loader.file_name().unwrap().to_string_lossy().to_string();
        assert!(name.starts_with("ld-"), "{loader:?}");
        assert!(loader.is_absolute());
    }

    #[test]
    fn a_text_file_has_none() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("script");
        std::fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
        assert_eq!(interpreter(&script).unwrap(), None);
    }
}
