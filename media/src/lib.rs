//! Writers of boot media and disk images, in-process, reproducible and without root: the
//! building blocks of moby's ISO and disk output formats.
//!
//! Every writer is a pure, synchronous transform: the same input gives the same bytes (no clock,
//! no random numbers: times, volume ids, disk signatures and GUIDs are given by the caller, who
//! derives them from the content). Filesystem and partition writers place their data into a file
//! with positioned writes, so that what they do not write stays a hole (images are sparse on
//! disk); container formats stream from such a raw image into any writer.
//!
//! | module | writes |
//! |---|---|
//! | [`content`] | where a file's bytes come from: memory or a region of an open file |
//! | [`extents`] | the data regions of a sparse raw image |
//! | [`fat`] | a FAT16/FAT32 filesystem with contiguous files |
//! | [`partition`] | MBR and GPT partition tables |
//! | [`tree`] | the file tree (directories, files, links, devices) that `iso` and `squashfs` write |
//! | [`iso`] | ISO 9660 with Rock Ridge, El Torito (BIOS and EFI) and isohybrid |
//! | [`syslinux`] | syslinux's boot sector and `ldlinux.sys` on a FAT filesystem |
//! | [`uki`] | a unified kernel image: the EFI stub with kernel, initrd and command line |
//! | [`qcow2`] | a qcow2 image from a raw image |
//! | [`vhd`] | fixed and dynamic VHD images from a raw image |
//! | [`vmdk`] | a streamOptimized VMDK from a raw image |
//! | [`sparse_tar`] | a GNU sparse tar holding a raw image (GCE's `disk.raw`) |
//! | [`squashfs`] | a squashfs 4.0 root filesystem (zlib, fragments, hard links, devices) |

pub mod content;
pub mod extents;
pub mod fat;
pub mod iso;
mod le;
pub mod partition;
pub mod qcow2;
pub mod sparse_tar;
pub mod squashfs;
pub mod syslinux;
pub mod tree;
pub mod uki;
pub mod vhd;
pub mod vmdk;
