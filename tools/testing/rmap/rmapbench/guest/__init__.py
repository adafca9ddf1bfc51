"""Running on the host: kernels, initramfs, QEMU, a command or the suite in a
guest, batches of boots for sweep and ab."""
