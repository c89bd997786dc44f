//! Where a process's vDSO keeps its clock functions: the `[vdso]` line of `/proc/<pid>/maps`, and the
//! ELF dynamic symbols of the image mapped there (pure: text and bytes in, addresses out).
//!
//! ```
//! let maps = "7ffd1000-7ffd3000 r-xp 00000000 00:00 0                          [vdso]\n";
//! assert_eq!(netfault::vdso::vdso_range(maps), Some((0x7ffd1000, 0x7ffd3000)));
//! ```

use object::{Object, ObjectSegment, ObjectSymbol};

/// The vDSO's symbols the clock fault replaces.
pub const CLOCK_GETTIME: &str = "__vdso_clock_gettime";
/// See [`CLOCK_GETTIME`].
pub const GETTIMEOFDAY: &str = "__vdso_gettimeofday";
/// See [`CLOCK_GETTIME`].
pub const TIME: &str = "__vdso_time";

/// Errors reading a vDSO image.
#[derive(Debug, thiserror::Error)]
pub enum VdsoError {
    /// Not an ELF image `object` can read.
    #[error("the vDSO is not a readable ELF image: {0}")]
    Elf(#[from] object::Error),
    /// A symbol is missing (another architecture, or a kernel without it).
    #[error("the vDSO has no {0}")]
    Missing(&'static str),
}

/// A function in the vDSO, at its address in the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VdsoFunction {
    /// Address in the process.
    pub addr: u64,
    /// Size in bytes (the ELF symbol's).
    pub size: u64,
}

impl VdsoFunction {
    /// Whether `ip` is inside the function.
    pub fn contains(&self, ip: u64) -> bool {
        ip >= self.addr && ip < self.addr + self.size.max(1)
    }
}

/// The clock functions of one vDSO.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VdsoClock {
    /// `__vdso_clock_gettime`.
    pub clock_gettime: VdsoFunction,
    /// `__vdso_gettimeofday`.
    pub gettimeofday: VdsoFunction,
    /// `__vdso_time`.
    pub time: VdsoFunction,
}

impl VdsoClock {
    /// The three, clock_gettime first.
    pub fn all(&self) -> [VdsoFunction; 3] {
        [self.clock_gettime, self.gettimeofday, self.time]
    }
}

/// The `[vdso]` mapping's start and end in a `/proc/<pid>/maps` text.
pub fn vdso_range(maps: &str) -> Option<(u64, u64)> {
    maps.lines().find(|l| l.trim_end().ends_with("[vdso]")).and_then(|l| {
        let (start, end) = l.split_whitespace().next()?.split_once('-')?;
        Some((u64::from_str_radix(start, 16).ok()?, u64::from_str_radix(end, 16).ok()?))
    })
}

/// The starts of the one-page, read+execute, private, anonymous mappings in a `/proc/<pid>/maps`
/// text: where a page injected by `netfault clock` (and left by `clear`) may be.
pub fn anonymous_code_pages(maps: &str, page_len: u64) -> Vec<u64> {
    maps.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (start, end) = f.next()?.split_once('-')?;
            let (perms, _offset, _dev, inode) = (f.next()?, f.next()?, f.next()?, f.next()?);
            let (start, end) = (u64::from_str_radix(start, 16).ok()?, u64::from_str_radix(end, 16).ok()?);
            (perms == "r-xp" && inode == "0" && f.next().is_none() && end - start == page_len).then_some(start)
        })
        .collect()
}

/// Finds the clock functions in `image`, the vDSO's bytes as mapped at `base`.
pub fn clock_functions(image: &[u8], base: u64) -> Result<VdsoClock, VdsoError> {
    let file = object::File::parse(image)?;
    // The vDSO is linked at some address (0 on x86-64); it is mapped at `base`.
    let linked = file.segments().map(|s| s.address()).min().unwrap_or(0);
    let find = |name: &'static str| {
        file.dynamic_symbols()
            .find(|s| s.name() == Ok(name))
            .map(|s| VdsoFunction {
                addr: base + s.address() - linked,
                size: s.size(),
            })
            .ok_or(VdsoError::Missing(name))
    };
    Ok(VdsoClock {
        clock_gettime: find(CLOCK_GETTIME)?,
        gettimeofday: find(GETTIMEOFDAY)?,
        time: find(TIME)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vdso_line_is_found_among_others() {
        let maps = "\
55d0c000-55d0e000 r--p 00000000 08:01 123 /usr/bin/cat
7ffc9000-7ffcd000 r--p 00000000 00:00 0                          [vvar]
7ffcd000-7ffcf000 r-xp 00000000 00:00 0                          [vdso]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0  [vsyscall]
";
        assert_eq!(vdso_range(maps), Some((0x7ffcd000, 0x7ffcf000)));
        assert_eq!(vdso_range("55d0c000-55d0e000 r--p 0 08:01 1 /bin/x\n"), None);
        assert!(anonymous_code_pages(maps, 4096).is_empty());
        let more = "7f0000000000-7f0000001000 r-xp 00000000 00:00 0 \n\
7f0000002000-7f0000003000 rw-p 00000000 00:00 0 \n\
7f0000004000-7f0000006000 r-xp 00000000 00:00 0 \n";
        assert_eq!(
            anonymous_code_pages(&format!("{maps}{more}"), 4096),
            vec![0x7f00_0000_0000]
        );
    }

    #[test]
    fn this_process_vdso_has_the_three_clock_functions() {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let (start, end) = vdso_range(&maps).unwrap();
        // SAFETY: the [vdso] mapping is readable for the life of the process.
        let image = unsafe { std::slice::from_raw_parts(start as *const u8, (end - start) as usize) };
        let clock = clock_functions(image, start).unwrap();
        for f in clock.all() {
            assert!(f.addr >= start && f.addr + f.size <= end, "{f:?}");
            assert!(f.size as usize >= crate::trampoline::PATCH_LEN, "{f:?}");
        }
        assert!(clock.clock_gettime.contains(clock.clock_gettime.addr + 1));
        assert!(matches!(clock_functions(&[0u8; 64], start), Err(VdsoError::Elf(_))));
    }
}
