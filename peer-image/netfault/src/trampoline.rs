//! The code page that skews a process's wall clock: built here as bytes (pure), copied into the
//! target by `netfault clock` (see `skew.rs` in the binary), and entered from the target's own vDSO.
//!
//! The page holds three functions that replace the vDSO's entry points, and the offset they add:
//!
//! * `clock_gettime(id, ts)`: for `CLOCK_REALTIME` (0) and `CLOCK_REALTIME_COARSE` (5) it calls the
//!   real vDSO code and adds the offset; every other clock (monotonic, boottime, CPU clocks, TAI)
//!   goes straight to the real vDSO code, so it stays fast and true. "The real vDSO code" is the
//!   vDSO function's first instructions, copied here (relocated by iced-x86's block encoder), then a
//!   jump back into the vDSO after them: its entry was overwritten by the jump into this page.
//! * `gettimeofday(tv, tz)`: the skewed `CLOCK_REALTIME`, in microseconds; `tz` is zeroed (the
//!   kernel's own timezone is zero unless someone called settimeofday).
//! * `time(t)`: the skewed `CLOCK_REALTIME_COARSE`'s seconds, as the vDSO's `time` reads them.
//!
//! Each vDSO entry is overwritten with `movabs rax, <fake>; jmp rax` (12 bytes; rax is free at a
//! call's entry in the System V ABI). The page is mapped read and execute only: the target cannot
//! write its own offset; the agent writes it through `/proc/<pid>/mem`, which may (FOLL_FORCE).
//!
//! The offset lives in two slots and an index (`ACTIVE`): the writer fills the slot not in use,
//! then flips the index with one aligned 8-byte write, so a reader never sees half an offset. The
//! page also records what it overwrote ([`PatchRecord`]), so the skew can be removed (the vDSO's
//! bytes put back) by a later call that has no other state: the target carries it.
//!
//! ```
//! use netfault::trampoline::{Offset, entry_patch};
//! let off = Offset::from_nanos(-1_500_000_000);
//! assert_eq!((off.sec, off.nsec), (-2, 500_000_000));
//! assert_eq!(entry_patch(0x7000_0000_0000)[..2], [0x48, 0xb8]);
//! ```

use iced_x86::code_asm::*;
use iced_x86::{BlockEncoderOptions, Decoder, DecoderOptions, FlowControl, Instruction};

/// Size of the injected page.
pub const PAGE_LEN: usize = 4096;
/// Where the data starts in the page (code before, on other cache lines).
pub const DATA: u64 = 0x800;
/// `syscall; int3` at the end of the code area: the agent runs system calls and calls in the target
/// through it (`netfault clock measure`), never touching code another thread may be running.
pub const SYSCALL_TRAP: u64 = DATA - 3;
/// An `int3`: the return address of a call the agent makes in the target.
pub const TRAP: u64 = DATA - 1;
/// `b"SYFTCLK1"`, at [`DATA`]: marks a page made by this module.
pub const MAGIC: u64 = u64::from_le_bytes(*b"SYFTCLK1");
/// The index (0 or 1) of the slot in use.
pub const ACTIVE: u64 = DATA + 8;
/// Slot `i` (seconds, then nanoseconds in 0..1e9) is at `SLOTS + 16 * i`.
pub const SLOTS: u64 = ACTIVE + 8;
/// Where the [`PatchRecord`]s start (three of them, [`PATCH_RECORD_LEN`] bytes each).
pub const PATCHES: u64 = DATA + 0x40;
/// One record: entry address (u64), length (u64), the original bytes (16).
pub const PATCH_RECORD_LEN: u64 = 32;
/// Bytes overwritten at each vDSO entry.
pub const PATCH_LEN: usize = 12;

/// The clock ids whose time is skewed.
pub const CLOCK_REALTIME: u32 = 0;
/// See [`CLOCK_REALTIME`].
pub const CLOCK_REALTIME_COARSE: u32 = 5;

/// Errors building the page.
#[derive(Debug, thiserror::Error)]
pub enum TrampolineError {
    /// The vDSO's `clock_gettime` starts with an instruction that cannot be moved (a branch), so its
    /// first bytes cannot be displaced into the page.
    #[error("the vDSO clock_gettime's first instructions cannot be relocated: {0}")]
    Prologue(String),
    /// The assembler refused (e.g. a RIP-relative operand out of reach from the page).
    #[error("assembling the clock trampoline: {0}")]
    Assemble(#[from] iced_x86::IcedError),
}

/// A wall-clock offset as the trampoline adds it: whole seconds (any sign) plus 0..1e9 ns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offset {
    /// Seconds, rounded towards minus infinity.
    pub sec: i64,
    /// Nanoseconds, 0 to 999 999 999.
    pub nsec: i64,
}

impl Offset {
    /// Splits a signed nanosecond offset.
    pub fn from_nanos(ns: i64) -> Offset {
        Offset {
            sec: ns.div_euclid(1_000_000_000),
            nsec: ns.rem_euclid(1_000_000_000),
        }
    }

    /// The offset in nanoseconds.
    pub fn as_nanos(self) -> i64 {
        self.sec * 1_000_000_000 + self.nsec
    }

    /// The slot's 16 bytes.
    pub fn to_bytes(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.sec.to_le_bytes());
        b[8..].copy_from_slice(&self.nsec.to_le_bytes());
        b
    }

    /// Reads a slot.
    pub fn from_bytes(b: &[u8; 16]) -> Offset {
        Offset {
            sec: i64::from_le_bytes(b[..8].try_into().expect("8 bytes")),
            nsec: i64::from_le_bytes(b[8..].try_into().expect("8 bytes")),
        }
    }
}

/// What the page overwrote at one vDSO entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PatchRecord {
    /// The entry's address in the target.
    pub entry: u64,
    /// The bytes that were there (the first [`PATCH_LEN`] count).
    pub original: [u8; PATCH_LEN],
}

impl PatchRecord {
    /// The record's bytes in the page.
    pub fn to_bytes(self) -> [u8; PATCH_RECORD_LEN as usize] {
        let mut b = [0u8; PATCH_RECORD_LEN as usize];
        b[..8].copy_from_slice(&self.entry.to_le_bytes());
        b[8..16].copy_from_slice(&(PATCH_LEN as u64).to_le_bytes());
        b[16..16 + PATCH_LEN].copy_from_slice(&self.original);
        b
    }

    /// Reads a record; `None` for an empty one or one of another length.
    pub fn from_bytes(b: &[u8]) -> Option<PatchRecord> {
        let entry = u64::from_le_bytes(b.get(..8)?.try_into().ok()?);
        let len = u64::from_le_bytes(b.get(8..16)?.try_into().ok()?);
        if entry == 0 || len != PATCH_LEN as u64 {
            return None;
        }
        Some(PatchRecord {
            entry,
            original: b.get(16..16 + PATCH_LEN)?.try_into().ok()?,
        })
    }
}

/// The 12 bytes written at a vDSO entry: `movabs rax, target; jmp rax`.
pub fn entry_patch(target: u64) -> [u8; PATCH_LEN] {
    let mut b = [0u8; PATCH_LEN];
    b[0] = 0x48;
    b[1] = 0xb8;
    b[2..10].copy_from_slice(&target.to_le_bytes());
    b[10] = 0xff;
    b[11] = 0xe0;
    b
}

/// The jump target of bytes written by [`entry_patch`], if they are such bytes.
pub fn patched_target(bytes: &[u8]) -> Option<u64> {
    if bytes.len() >= PATCH_LEN && bytes[..2] == [0x48, 0xb8] && bytes[10..12] == [0xff, 0xe0] {
        Some(u64::from_le_bytes(bytes[2..10].try_into().ok()?))
    } else {
        None
    }
}

/// One vDSO entry point in the target: its address and at least 32 bytes read there.
#[derive(Debug, Clone)]
pub struct VdsoEntry {
    /// The entry's address in the target.
    pub addr: u64,
    /// The code there now (clock_gettime's first instructions are displaced into the page).
    pub code: Vec<u8>,
}

impl VdsoEntry {
    fn original(&self) -> Result<[u8; PATCH_LEN], TrampolineError> {
        self.code
            .get(..PATCH_LEN)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| TrampolineError::Prologue(format!("fewer than {PATCH_LEN} bytes at {:#x}", self.addr)))
    }
}

/// The vDSO entry points the page replaces.
#[derive(Debug, Clone)]
pub struct VdsoEntries {
    /// `__vdso_clock_gettime`.
    pub clock_gettime: VdsoEntry,
    /// `__vdso_gettimeofday`.
    pub gettimeofday: VdsoEntry,
    /// `__vdso_time`.
    pub time: VdsoEntry,
}

impl VdsoEntries {
    /// The three, clock_gettime first (the order of the page's records).
    pub fn all(&self) -> [&VdsoEntry; 3] {
        [&self.clock_gettime, &self.gettimeofday, &self.time]
    }
}

/// A built page and where its functions are.
#[derive(Debug, Clone)]
pub struct Page {
    /// [`PAGE_LEN`] bytes, offset zero, records filled in (originals from [`VdsoEntries`]).
    pub bytes: Vec<u8>,
    /// Address of the fake `clock_gettime`.
    pub clock_gettime: u64,
    /// Address of the fake `gettimeofday`.
    pub gettimeofday: u64,
    /// Address of the fake `time`.
    pub time: u64,
    /// How many bytes of the vDSO's clock_gettime were displaced.
    pub displaced: usize,
}

impl Page {
    /// The patches to write: (vDSO entry, bytes), clock_gettime first.
    pub fn patches(&self, entries: &VdsoEntries) -> [(u64, [u8; PATCH_LEN]); 3] {
        [
            (entries.clock_gettime.addr, entry_patch(self.clock_gettime)),
            (entries.gettimeofday.addr, entry_patch(self.gettimeofday)),
            (entries.time.addr, entry_patch(self.time)),
        ]
    }
}

/// The whole instructions at the start of `code` (at address `ip`) covering at least `len` bytes;
/// refused if one of them changes the flow (a branch, a call, a return) or is undecodable.
pub fn displaced_instructions(code: &[u8], ip: u64, len: usize) -> Result<Vec<Instruction>, TrampolineError> {
    let mut decoder = Decoder::with_ip(64, code, ip, DecoderOptions::NONE);
    let mut out = Vec::new();
    let mut taken = 0;
    while taken < len {
        if !decoder.can_decode() {
            return Err(TrampolineError::Prologue(format!("only {taken} bytes decodable")));
        }
        let instr = decoder.decode();
        if instr.is_invalid() {
            return Err(TrampolineError::Prologue(format!("invalid instruction at +{taken}")));
        }
        if instr.flow_control() != FlowControl::Next {
            return Err(TrampolineError::Prologue(format!(
                "{:?} at +{taken} changes the flow",
                instr.code()
            )));
        }
        taken += instr.len();
        out.push(instr);
    }
    Ok(out)
}

/// Builds the page to be mapped at `base` for a target whose vDSO entries are `entries`.
pub fn build(base: u64, entries: &VdsoEntries) -> Result<Page, TrampolineError> {
    let cgt = &entries.clock_gettime;
    let displaced = displaced_instructions(&cgt.code, cgt.addr, PATCH_LEN)?;
    let displaced_len: usize = displaced.iter().map(|i| i.len()).sum();
    let resume = cgt.addr + displaced_len as u64;

    let mut a = CodeAssembler::new(64)?;
    let [
        mut fake_cgt,
        mut real_cgt,
        mut resume_addr,
        mut realtime,
        mut no_carry,
        mut cgt_ret,
        mut fake_gtod,
        mut gtod_tz,
        mut gtod_ok,
        mut gtod_out,
        mut fake_time,
        mut time_out,
    ] = std::array::from_fn(|_| a.create_label());

    // clock_gettime(edi = clock id, rsi = ts)
    a.set_label(&mut fake_cgt)?;
    a.cmp(edi, CLOCK_REALTIME)?;
    a.je(realtime)?;
    a.cmp(edi, CLOCK_REALTIME_COARSE)?;
    a.je(realtime)?;
    // Any other clock: the real vDSO code, untouched (falls through).
    a.set_label(&mut real_cgt)?;
    for instr in displaced {
        a.add_instruction(instr)?;
    }
    a.jmp(qword_ptr(resume_addr))?;
    a.set_label(&mut resume_addr)?;
    a.dq(&[resume])?;

    a.set_label(&mut realtime)?;
    // Entry rsp is 8 mod 16; the push makes it 0, so the callee sees 8 mod 16 as the ABI says.
    a.push(rsi)?;
    a.call(real_cgt)?;
    a.pop(rsi)?;
    a.test(eax, eax)?;
    a.jnz(cgt_ret)?;
    a.mov(rcx, base + ACTIVE)?;
    a.mov(rdx, qword_ptr(rcx))?;
    a.and(edx, 1)?;
    a.shl(rdx, 4)?;
    a.add(rdx, rcx)?;
    // Slot i is at ACTIVE + 8 + 16 i.
    a.mov(r8, qword_ptr(rdx + 8))?;
    a.mov(r9, qword_ptr(rdx + 16))?;
    a.add(qword_ptr(rsi), r8)?;
    a.mov(r10, qword_ptr(rsi + 8))?;
    a.add(r10, r9)?;
    a.cmp(r10, 1_000_000_000)?;
    a.jb(no_carry)?;
    a.sub(r10, 1_000_000_000)?;
    a.add(qword_ptr(rsi), 1)?;
    a.set_label(&mut no_carry)?;
    a.mov(qword_ptr(rsi + 8), r10)?;
    a.set_label(&mut cgt_ret)?;
    a.ret()?;

    // gettimeofday(rdi = tv, rsi = tz)
    a.set_label(&mut fake_gtod)?;
    a.push(rbx)?;
    a.push(r12)?;
    a.sub(rsp, 24)?; // 16 for a timespec; rsp is 0 mod 16 at the call below
    a.mov(rbx, rdi)?;
    a.mov(r12, rsi)?;
    a.mov(edi, CLOCK_REALTIME)?;
    a.mov(rsi, rsp)?;
    a.call(fake_cgt)?;
    a.test(eax, eax)?;
    a.jnz(gtod_out)?;
    a.test(rbx, rbx)?;
    a.jz(gtod_tz)?;
    a.mov(rax, qword_ptr(rsp))?;
    a.mov(qword_ptr(rbx), rax)?;
    a.mov(rax, qword_ptr(rsp + 8))?;
    a.xor(edx, edx)?;
    a.mov(ecx, 1000)?;
    a.div(rcx)?;
    a.mov(qword_ptr(rbx + 8), rax)?;
    a.set_label(&mut gtod_tz)?;
    a.test(r12, r12)?;
    a.jz(gtod_ok)?;
    a.mov(qword_ptr(r12), 0)?;
    a.set_label(&mut gtod_ok)?;
    a.xor(eax, eax)?;
    a.set_label(&mut gtod_out)?;
    a.add(rsp, 24)?;
    a.pop(r12)?;
    a.pop(rbx)?;
    a.ret()?;

    // time(rdi = t)
    a.set_label(&mut fake_time)?;
    a.push(rbx)?;
    a.sub(rsp, 16)?;
    a.mov(rbx, rdi)?;
    a.mov(edi, CLOCK_REALTIME_COARSE)?;
    a.mov(rsi, rsp)?;
    a.call(fake_cgt)?;
    a.mov(rax, qword_ptr(rsp))?;
    a.test(rbx, rbx)?;
    a.jz(time_out)?;
    a.mov(qword_ptr(rbx), rax)?;
    a.set_label(&mut time_out)?;
    a.add(rsp, 16)?;
    a.pop(rbx)?;
    a.ret()?;

    let result = a.assemble_options(base, BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS)?;
    let code = &result.inner.code_buffer;
    if code.len() as u64 > SYSCALL_TRAP {
        return Err(TrampolineError::Prologue(format!(
            "code is {} bytes, too long",
            code.len()
        )));
    }
    let mut bytes = vec![0u8; PAGE_LEN];
    bytes[..code.len()].copy_from_slice(code);
    let put = |bytes: &mut Vec<u8>, at: u64, b: &[u8]| bytes[at as usize..at as usize + b.len()].copy_from_slice(b);
    put(&mut bytes, SYSCALL_TRAP, &[0x0f, 0x05, 0xcc]);
    put(&mut bytes, DATA, &MAGIC.to_le_bytes());
    put(&mut bytes, SLOTS, &Offset::from_nanos(0).to_bytes());
    put(&mut bytes, SLOTS + 16, &Offset::from_nanos(0).to_bytes());
    for (i, entry) in entries.all().into_iter().enumerate() {
        let record = PatchRecord {
            entry: entry.addr,
            original: entry.original()?,
        };
        put(&mut bytes, PATCHES + PATCH_RECORD_LEN * i as u64, &record.to_bytes());
    }
    Ok(Page {
        bytes,
        clock_gettime: result.label_ip(&fake_cgt)?,
        gettimeofday: result.label_ip(&fake_gtod)?,
        time: result.label_ip(&fake_time)?,
        displaced: displaced_len,
    })
}

/// The records a page holds.
pub fn records(page: &[u8]) -> Vec<PatchRecord> {
    (0..3)
        .filter_map(|i| {
            let at = (PATCHES + PATCH_RECORD_LEN * i) as usize;
            PatchRecord::from_bytes(page.get(at..at + PATCH_RECORD_LEN as usize)?)
        })
        .collect()
}

/// The offset a page holds now.
pub fn current_offset(page: &[u8]) -> Option<Offset> {
    let active = u64::from_le_bytes(page.get(ACTIVE as usize..ACTIVE as usize + 8)?.try_into().ok()?);
    let at = (SLOTS + 16 * (active & 1)) as usize;
    Some(Offset::from_bytes(page.get(at..at + 16)?.try_into().ok()?))
}

/// The writes that switch a page to `offset`: (page offset, bytes), in order (slot, then index).
pub fn offset_writes(page: &[u8], offset: Offset) -> Option<[(u64, Vec<u8>); 2]> {
    let active = u64::from_le_bytes(page.get(ACTIVE as usize..ACTIVE as usize + 8)?.try_into().ok()?);
    let next = (active & 1) ^ 1;
    Some([
        (SLOTS + 16 * next, offset.to_bytes().to_vec()),
        (ACTIVE, next.to_le_bytes().to_vec()),
    ])
}

/// `clock_gettime`'s C signature.
pub type ClockGettime = unsafe extern "C" fn(libc::clockid_t, *mut libc::timespec) -> libc::c_int;
/// `gettimeofday`'s C signature.
pub type Gettimeofday = unsafe extern "C" fn(*mut libc::timeval, *mut libc::c_void) -> libc::c_int;
/// `time`'s C signature.
pub type Time = unsafe extern "C" fn(*mut libc::time_t) -> libc::time_t;

/// A page built for this very process and mapped here, its own vDSO untouched: the fakes can be
/// called directly (tests, and the cost measured in `benches/clock.rs`). Unmapped on drop.
pub struct LocalPage {
    base: *mut libc::c_void,
    /// The fake `clock_gettime`.
    pub clock_gettime: ClockGettime,
    /// The fake `gettimeofday`.
    pub gettimeofday: Gettimeofday,
    /// The fake `time`.
    pub time: Time,
}

impl LocalPage {
    /// Builds and maps a page adding `offset` to this process's wall clock.
    pub fn load(offset: Offset) -> Result<LocalPage, TrampolineError> {
        let local = |e: &str| TrampolineError::Prologue(format!("this process: {e}"));
        let maps = std::fs::read_to_string("/proc/self/maps").map_err(|e| local(&e.to_string()))?;
        let (start, end) = crate::vdso::vdso_range(&maps).ok_or_else(|| local("no vDSO"))?;
        // SAFETY: the [vdso] mapping is readable for the life of the process.
        let image = unsafe { std::slice::from_raw_parts(start as *const u8, (end - start) as usize) };
        let clock = crate::vdso::clock_functions(image, start).map_err(|e| local(&e.to_string()))?;
        let entry = |f: crate::vdso::VdsoFunction| {
            let at = (f.addr - start) as usize;
            VdsoEntry {
                addr: f.addr,
                code: image[at..(at + 32).min(image.len())].to_vec(),
            }
        };
        let entries = VdsoEntries {
            clock_gettime: entry(clock.clock_gettime),
            gettimeofday: entry(clock.gettimeofday),
            time: entry(clock.time),
        };
        // SAFETY: a fresh anonymous mapping, written, then made executable before any call.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                PAGE_LEN,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(local("mmap failed"));
        }
        let mut page = build(base as u64, &entries)?;
        for (at, b) in offset_writes(&page.bytes, offset).expect("a full page") {
            page.bytes[at as usize..at as usize + b.len()].copy_from_slice(&b);
        }
        // SAFETY: the mapping is PAGE_LEN long; then it holds the code built for this address,
        // whose three functions have these C signatures.
        unsafe {
            std::ptr::copy_nonoverlapping(page.bytes.as_ptr(), base as *mut u8, PAGE_LEN);
            if libc::mprotect(base, PAGE_LEN, libc::PROT_READ | libc::PROT_EXEC) != 0 {
                libc::munmap(base, PAGE_LEN);
                return Err(local("mprotect failed"));
            }
            Ok(LocalPage {
                base,
                clock_gettime: std::mem::transmute::<u64, ClockGettime>(page.clock_gettime),
                gettimeofday: std::mem::transmute::<u64, Gettimeofday>(page.gettimeofday),
                time: std::mem::transmute::<u64, Time>(page.time),
            })
        }
    }
}

impl Drop for LocalPage {
    fn drop(&mut self) {
        // SAFETY: the mapping made by `load`, not used past the page's life.
        unsafe { libc::munmap(self.base, PAGE_LEN) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_split_into_floor_seconds_and_positive_nanoseconds() {
        for ns in [
            0,
            1,
            -1,
            3_600_000_000_000,
            -7_200_000_000_001,
            999_999_999,
            i64::MAX / 2,
        ] {
            let off = Offset::from_nanos(ns);
            assert!((0..1_000_000_000).contains(&off.nsec), "{ns}");
            assert_eq!(off.as_nanos(), ns);
            assert_eq!(Offset::from_bytes(&off.to_bytes()), off);
        }
        assert_eq!(
            Offset::from_nanos(-1),
            Offset {
                sec: -1,
                nsec: 999_999_999
            }
        );
    }

    #[test]
    fn an_entry_patch_is_recognised_and_others_are_not() {
        let p = entry_patch(0x7f00_dead_b000);
        assert_eq!(patched_target(&p), Some(0x7f00_dead_b000));
        assert_eq!(patched_target(&[0x55, 0x48, 0x89, 0xe5, 0, 0, 0, 0, 0, 0, 0, 0]), None);
        assert_eq!(patched_target(&p[..11]), None);
    }

    #[test]
    fn a_prologue_with_a_branch_is_refused_and_a_plain_one_is_cut_at_an_instruction() {
        // push rbp; mov rbp,rsp; push r14; push rbx; and rsp,-16; sub rsp,16 (kernel 6.18's)
        let plain = [
            0x55, 0x48, 0x89, 0xe5, 0x41, 0x56, 0x53, 0x48, 0x83, 0xe4, 0xf0, 0x48, 0x83, 0xec, 0x10, 0x83, 0xff, 0x17,
        ];
        let got = displaced_instructions(&plain, 0x1000, PATCH_LEN).unwrap();
        assert_eq!(got.iter().map(|i| i.len()).sum::<usize>(), 15);
        // cmp edi,0x17; ja +0xd2 within the first 12 bytes
        let branchy = [0x83, 0xff, 0x17, 0x0f, 0x87, 0xd2, 0, 0, 0, 0x90, 0x90, 0x90, 0x90];
        assert!(displaced_instructions(&branchy, 0x1000, PATCH_LEN).is_err());
    }

    #[test]
    fn offset_writes_fill_the_idle_slot_then_flip_the_index() {
        let mut page = vec![0u8; PAGE_LEN];
        for round in 0..3 {
            let off = Offset::from_nanos(round * 1_234_567_890 - 1);
            for (at, b) in offset_writes(&page, off).unwrap() {
                page[at as usize..at as usize + b.len()].copy_from_slice(&b);
            }
            assert_eq!(current_offset(&page), Some(off));
        }
    }

    #[test]
    fn records_round_trip_through_the_page() {
        let mut page = vec![0u8; PAGE_LEN];
        let record = PatchRecord {
            entry: 0x7fff_0000_0830,
            original: [7; PATCH_LEN],
        };
        let at = (PATCHES + PATCH_RECORD_LEN) as usize;
        page[at..at + PATCH_RECORD_LEN as usize].copy_from_slice(&record.to_bytes());
        assert_eq!(records(&page), vec![record]);
    }

    /// Builds the page for this very process (its own vDSO, untouched) and calls the fakes directly.
    #[test]
    fn the_page_built_for_this_process_skews_realtime_and_leaves_monotonic_alone() {
        let offset = Offset::from_nanos(3_600_000_000_000 + 250_000_000);
        let page = LocalPage::load(offset).unwrap();
        // SAFETY: the page is mapped readable for `page`'s life.
        let trap = unsafe { std::slice::from_raw_parts((page.base as *const u8).add(SYSCALL_TRAP as usize), 3) };
        assert_eq!(trap, [0x0f, 0x05, 0xcc], "syscall; int3 for the agent's injected calls");
        let (cgt, gtod, time) = (page.clock_gettime, page.gettimeofday, page.time);
        let ns = |ts: libc::timespec| ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128;
        let now = |id| {
            let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
            // SAFETY: a valid timespec.
            assert_eq!(unsafe { libc::clock_gettime(id, &mut ts) }, 0);
            ns(ts)
        };
        let fake = |id| {
            let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
            // SAFETY: a valid timespec; `cgt` is the fake clock_gettime.
            assert_eq!(unsafe { cgt(id, &mut ts) }, 0);
            assert!((0..1_000_000_000).contains(&ts.tv_nsec));
            ns(ts)
        };
        let want = offset.as_nanos() as i128;
        for id in [libc::CLOCK_REALTIME, libc::CLOCK_REALTIME_COARSE] {
            let skew = fake(id) - now(id);
            assert!(
                (want - skew).abs() < 20_000_000,
                "clock {id}: skew {skew} ns, want {want}"
            );
        }
        for id in [libc::CLOCK_MONOTONIC, libc::CLOCK_BOOTTIME, libc::CLOCK_MONOTONIC_RAW] {
            let (a, b, c) = (now(id), fake(id), now(id));
            assert!(a <= b && b <= c, "clock {id}: {a} {b} {c}");
        }
        let mut tv = libc::timeval { tv_sec: 0, tv_usec: 0 };
        let mut tz = [0xffu8; 8];
        // SAFETY: valid pointers.
        assert_eq!(unsafe { gtod(&mut tv, tz.as_mut_ptr().cast()) }, 0);
        let skew = tv.tv_sec as i128 * 1_000_000_000 + tv.tv_usec as i128 * 1000 - now(libc::CLOCK_REALTIME);
        assert!((want - skew).abs() < 20_000_000, "gettimeofday: skew {skew}");
        assert_eq!(tz, [0u8; 8]);
        let mut t: libc::time_t = 0;
        // SAFETY: a valid pointer.
        let r = unsafe { time(&mut t) };
        assert_eq!(r, t);
        let real = now(libc::CLOCK_REALTIME_COARSE) / 1_000_000_000;
        assert!((r as i128 - real - 3600).abs() <= 1, "time: {r} vs {real}");
    }
}
