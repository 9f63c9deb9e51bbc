import CKernels

/// What an executable does once, first thing, before the engine computes anything.
public enum EngineSetup {
    /// Sets the allocator up for the engine's many-megabyte transient buffers (`xattn_tune_allocator`:
    /// kept in the heap when freed, not page-faulted in anew by every layer) and opens OpenBLAS; nil
    /// when ready, else why not. Call it while the process has one thread: choosing OpenBLAS's
    /// kernel may set the environment.
    public static func prepare() -> String? {
        xattn_tune_allocator()
        return Gemm.prepare()
    }

    /// Returns the memory the engine freed to the kernel: the allocator keeps it while a job runs
    /// (`prepare`), a service between jobs should not.
    public static func releaseFreeMemory() { xattn_release_free_memory() }
}
