//! Page-allocation failures: `kmem:mm_page_alloc` without a page.

use crate::{Header, Task};

/// `kmem:mm_page_alloc` that returned no page: an allocation failed.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PageAllocRecord {
    pub header: Header,
    /// The task that asked.
    pub task: Task,
    pub gfp_flags: u64,
    pub order: u32,
    pub migratetype: i32,
    /// Kernel stack id in the `STACKS` map when stacks were asked for, else -1.
    pub stack_id: i64,
}

// SAFETY (the Pod impls): #[repr(C)] plain data without padding holes that
// could leak uninitialised bytes into the kernel, valid for every bit pattern.
#[cfg(feature = "user")]
unsafe impl aya::Pod for PageAllocRecord {}
