//! Secret hashing with argon2id, off the async runtime and bounded: a flood
//! of sign-ins must not stall other routes.

use crate::error::ApiError;
use crate::measure as metrics;
use argon2::password_hash::{rand_core::OsRng, Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;
use tokio::sync::Semaphore;

/// Runs argon2id off the async runtime, a bounded number at a time, in
/// working memory (19 MiB a hash) reused from one hash to the next: faulting
/// in fresh pages for every hash cost about a third of a sign-in's CPU. The
/// memory is kept only while other hashes wait; when the last one is done it
/// goes back to the system.
#[derive(Debug)]
pub struct Hashing {
    permits: Semaphore,
    /// Working memory of finished hashes, for the next ones.
    spare: Mutex<Vec<Memory>>,
    /// Hashes asked for and not finished, waiting or running.
    wanted: AtomicUsize,
}

/// One hash asked for; the last one dropped frees the spare memory.
struct Wanted<'a>(&'a Hashing);

impl Drop for Wanted<'_> {
    fn drop(&mut self) {
        if self.0.wanted.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0
                .spare
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clear();
        }
    }
}

/// A hash waiting for a permit: counted in the queue's depth while it waits
/// and its wait recorded when it stops waiting (given a permit, or cancelled).
struct Queued(Instant);

impl Queued {
    fn new() -> Self {
        ::metrics::gauge!(metrics::HASHING_QUEUE).increment(1.0);
        Self(Instant::now())
    }
}

impl Drop for Queued {
    fn drop(&mut self) {
        ::metrics::gauge!(metrics::HASHING_QUEUE).decrement(1.0);
        ::metrics::histogram!(metrics::HASHING_WAIT).record(self.0.elapsed().as_secs_f64());
    }
}

impl Hashing {
    /// At most `permits` hashes at once (at least one).
    pub fn new(permits: usize) -> Self {
        Self {
            permits: Semaphore::new(permits.max(1)),
            spare: Mutex::default(),
            wanted: AtomicUsize::new(0),
        }
    }

    /// Hashes `secret` with argon2id and a fresh salt into a PHC string.
    pub async fn hash(&self, secret: String) -> Result<String, ApiError> {
        self.run(move |memory| hash_in(memory, secret.as_bytes()))
            .await?
            .map_err(|e| ApiError::internal(anyhow::anyhow!("hashing failed: {e}")))
    }

    /// Whether `secret` matches the PHC string `hash`.
    pub async fn verify(&self, hash: String, secret: String) -> Result<bool, ApiError> {
        self.run(move |memory| verify_in(memory, &hash, secret.as_bytes()))
            .await
    }

    /// Runs `work` on a blocking thread at background priority, with working memory.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Memory) -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        self.wanted.fetch_add(1, Ordering::AcqRel);
        let _wanted = Wanted(self);
        let queued = Queued::new();
        let _permit = self.permits.acquire().await.map_err(ApiError::internal)?;
        drop(queued);
        let memory = self
            .spare
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let (memory, out) = tokio::task::spawn_blocking(move || {
            background_priority();
            let mut memory = memory.unwrap_or_default();
            let out = work(&mut memory);
            (memory, out)
        })
        .await
        .map_err(ApiError::internal)?;
        self.spare
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(memory);
        Ok(out)
    }

    /// Spare working memories kept for the next hashes.
    #[cfg(test)]
    fn spare_count(&self) -> usize {
        self.spare
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// Hashing yields the CPU to request handling. The blocking threads that hash
/// run at a lower scheduling priority (nice 10; Linux sets it per thread).
fn background_priority() {
    #[cfg(target_os = "linux")]
    {
        thread_local!(static LOWERED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) });
        LOWERED.with(|lowered| {
            if !lowered.get() {
                // SAFETY: gettid and setpriority take plain integers and touch no memory of ours.
                let tid = unsafe { libc::gettid() };
                // SAFETY: as above; a failure leaves the priority as it was, which is harmless.
                let _ = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 10) };
                lowered.set(true);
            }
        });
    }
}

/// OWASP's argon2id parameters: 19 MiB, 2 passes, 1 lane.
fn owasp_params() -> Params {
    Params::new(19 * 1024, 2, 1, None).unwrap_or_default()
}

/// Argon2's working memory, taken from the system allocator rather than the
/// process's global one (mimalloc). mimalloc keeps a freed block in the pages
/// of the thread that allocated it, and the blocking threads that hash sit
/// idle after a burst: the service held two hashes' 19 MiB each under a
/// later read load (issue 22). glibc maps a block this large on its own and
/// unmaps it when freed (`server::limit_resident_memory`).
#[derive(Debug, Default)]
pub struct Memory(Option<(NonNull<Block>, Layout)>);

// SAFETY: `Memory` owns its blocks alone, as a `Vec<Block>` would.
unsafe impl Send for Memory {}

impl Memory {
    /// At least `len` blocks: the ones held when enough, else fresh zeroed
    /// ones (only the first hash in this memory pays for them).
    fn at_least(&mut self, len: usize) -> Result<&mut [Block], argon2::Error> {
        let held = self
            .0
            .map_or(0, |(_, layout)| layout.size() / size_of::<Block>());
        if held < len.max(1) {
            let layout =
                Layout::array::<Block>(len.max(1)).map_err(|_| argon2::Error::MemoryTooMuch)?;
            // The old blocks go before the new ones come.
            *self = Self::default();
            // SAFETY: `layout` has a non-zero size (at least one 1 KiB block).
            let blocks = unsafe { System.alloc_zeroed(layout) };
            let Some(blocks) = NonNull::new(blocks.cast::<Block>()) else {
                std::alloc::handle_alloc_error(layout);
            };
            self.0 = Some((blocks, layout));
        }
        let (blocks, layout) = self.0.ok_or(argon2::Error::MemoryTooMuch)?;
        // SAFETY: `blocks` holds this many initialised blocks (zeroes, then
        // whatever a hash left: any bit pattern is a valid `Block`), which
        // only `self` refers to, for as long as `self` is borrowed.
        Ok(unsafe {
            std::slice::from_raw_parts_mut(blocks.as_ptr(), layout.size() / size_of::<Block>())
        })
    }
}

impl Drop for Memory {
    fn drop(&mut self) {
        if let Some((blocks, layout)) = self.0.take() {
            // SAFETY: allocated in `at_least` by `System` with this layout.
            unsafe { System.dealloc(blocks.as_ptr().cast(), layout) };
        }
    }
}

/// `memory` grown to what `params` needs.
fn blocks_for<'m>(
    memory: &'m mut Memory,
    params: &Params,
) -> Result<&'m mut [Block], argon2::Error> {
    memory.at_least(params.block_count())
}

/// Hashes `secret` with a fresh salt into a PHC string, in `memory`.
pub fn hash_in(memory: &mut Memory, secret: &[u8]) -> argon2::password_hash::Result<String> {
    let params = owasp_params();
    let salt = SaltString::generate(&mut OsRng);
    let mut salt_bytes = [0u8; 64];
    let raw_salt = salt.as_salt().decode_b64(&mut salt_bytes)?;
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password_into_with_memory(secret, raw_salt, &mut out, blocks_for(memory, &params)?)?;
    let hash = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params)?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out)?),
    };
    Ok(hash.to_string())
}

/// Whether `secret` matches the PHC string `hash` (with the parameters it
/// names), computed in `memory` and compared in constant time.
fn verify_in(memory: &mut Memory, hash: &str, secret: &[u8]) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let (Ok(algorithm), Ok(params), Some(salt), Some(expected)) = (
        Algorithm::try_from(parsed.algorithm),
        Params::try_from(&parsed),
        parsed.salt,
        parsed.hash,
    ) else {
        return false;
    };
    let Ok(version) = parsed
        .version
        .map_or(Ok(Version::default()), Version::try_from)
    else {
        return false;
    };
    let mut salt_bytes = [0u8; 64];
    let Ok(raw_salt) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    let mut out = [0u8; Output::MAX_LENGTH];
    let out = &mut out[..expected.len()];
    let Ok(blocks) = blocks_for(memory, &params) else {
        return false;
    };
    Argon2::new(algorithm, version, params.clone())
        .hash_password_into_with_memory(secret, raw_salt, out, blocks)
        .is_ok()
        && Output::new(out).is_ok_and(|computed| computed == expected)
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::PasswordVerifier;
    use std::sync::Arc;

    #[tokio::test]
    async fn a_hash_verifies_its_secret_only() {
        let hashing = Hashing::new(2);
        let hash = hashing.hash("correct horse".into()).await.expect("hashed");
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(hashing
            .verify(hash.clone(), "correct horse".into())
            .await
            .expect("verified"));
        assert!(!hashing
            .verify(hash, "wrong horse".into())
            .await
            .expect("verified"));
    }

    #[test]
    fn hashes_are_standard_phc_strings() {
        let hash = hash_in(&mut Memory::default(), b"secret").expect("hashed");
        let parsed = PasswordHash::new(&hash).expect("a PHC string");
        assert!(Argon2::default()
            .verify_password(b"secret", &parsed)
            .is_ok());
        // Salts are fresh: the same secret hashes differently.
        assert_ne!(
            hash,
            hash_in(&mut Memory::default(), b"secret").expect("hashed")
        );
    }

    #[test]
    fn malformed_hashes_never_match() {
        let mut memory = Memory::default();
        for hash in ["", "plain", "$argon2id$v=19$m=19456,t=2,p=1$", "$pbkdf2$x"] {
            assert!(!verify_in(&mut memory, hash, b"secret"), "{hash:?}");
        }
    }

    #[test]
    fn hashes_with_other_parameters_still_verify() {
        let params = Params::new(8 * 1024, 1, 1, None).expect("parameters");
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let salt = SaltString::generate(&mut OsRng);
        let hash = argon2::PasswordHasher::hash_password(&argon, b"secret", &salt)
            .expect("hashed")
            .to_string();
        assert!(verify_in(&mut Memory::default(), &hash, b"secret"));
    }

    #[test]
    fn working_memory_starts_zeroed_grows_and_is_kept_when_large_enough() {
        let mut memory = Memory::default();
        let blocks = memory.at_least(8).expect("blocks");
        assert_eq!(blocks.len(), 8);
        assert!(blocks.iter().all(|b| b.as_ref().iter().all(|w| *w == 0)));
        blocks[7].as_mut()[127] = 42;
        let kept = blocks.as_ptr();
        // Enough already: the same blocks, contents as left.
        let blocks = memory.at_least(4).expect("blocks");
        assert_eq!((blocks.as_ptr(), blocks.len()), (kept, 8));
        assert_eq!(blocks[7].as_ref()[127], 42);
        let blocks = memory.at_least(16).expect("blocks");
        assert_eq!(blocks.len(), 16);
        assert!(blocks.iter().all(|b| b.as_ref().iter().all(|w| *w == 0)));
        // A size no allocator can describe is an error, not an abort.
        assert!(Memory::default().at_least(usize::MAX).is_err());
    }

    #[tokio::test]
    async fn working_memory_is_freed_when_no_hash_waits() {
        let hashing = Arc::new(Hashing::new(1));
        let hashes: Vec<_> = (0..3)
            .map(|i| {
                let hashing = hashing.clone();
                tokio::spawn(async move { hashing.hash(format!("secret {i}")).await })
            })
            .collect();
        for hash in hashes {
            hash.await.expect("joined").expect("hashed");
        }
        assert_eq!(hashing.wanted.load(Ordering::Acquire), 0);
        assert_eq!(hashing.spare_count(), 0);
    }
}
