//! One kernel record's way through userspace: decoded, explained, written.
//! `tracer watch` feeds it from the ring buffer; [`crate::replay`] from
//! memory, for the allocation test and the throughput benchmark, so both
//! measure the very code a storm runs through.

use crate::{explain::Explainer, output::Output, records};

pub struct Pipeline {
    pub explainer: Explainer,
    pub output: Output,
    /// Records read, well-formed or not.
    pub records: u64,
    pub malformed: u64,
}

impl Pipeline {
    pub fn new(explainer: Explainer, output: Output) -> Self {
        Self {
            explainer,
            output,
            records: 0,
            malformed: 0,
        }
    }

    /// One record's bytes as the kernel wrote them. The events it completes
    /// go into the output's batch; see [`Output::flush`].
    pub fn record(&mut self, bytes: &[u8]) {
        self.records += 1;
        match records::decode(bytes) {
            Ok(record) => {
                self.explainer.handle(&record, &mut self.output);
            }
            Err(e) => {
                if self.malformed == 0 {
                    tracing::warn!(
                        "skipping a malformed kernel record ({e}); further ones are only counted"
                    );
                }
                self.malformed += 1;
            }
        }
    }

    /// Releases the events the explainer held back once their wait is over
    /// (`now_ns` CLOCK_MONOTONIC; `u64::MAX`: all of them), and writes.
    pub fn flush(&mut self, now_ns: u64) {
        self.explainer.flush(now_ns, &mut self.output);
        self.output.flush();
    }
}
