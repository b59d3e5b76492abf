//! Synthetic TDVF images with independently recomputed digests, and the real-firmware check.

use sha2::{Digest, Sha384};

use super::*;

const FOOTER: &str = "96b582de-1fb2-45f7-baea-a366c55a082d";
const TDX_OFFSET: &str = "e47a6535-984a-4798-865e-4685a7bf8ec2";

/// GUID text → on-disk bytes, written independently of `tdvf::guid_bytes`.
fn guid(s: &str) -> Vec<u8> {
    let parts: Vec<&str> = s.split('-').collect();
    let mut out = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        let mut b = hex::decode(p).expect("hex");
        if i < 3 {
            b.reverse();
        }
        out.extend(b);
    }
    out
}

/// (data_offset, raw, gpa, mem, type, attributes)
type Sec = (u32, u32, u64, u64, u32, u32);

/// A 64 KiB image: a BFV at 0x0000 (2 pages), a CFV at 0x2000 (1 page), the TDVF descriptor
/// at 0x8000 and the GUIDed table at the end.
fn image(sections: &[Sec]) -> Vec<u8> {
    let len = 0x1_0000usize;
    let mut fw: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
    let desc = 0x8000usize;
    let mut d = b"TDVF".to_vec();
    d.extend((16 + 32 * sections.len() as u32).to_le_bytes());
    d.extend(1u32.to_le_bytes());
    d.extend((sections.len() as u32).to_le_bytes());
    for s in sections {
        d.extend(s.0.to_le_bytes());
        d.extend(s.1.to_le_bytes());
        d.extend(s.2.to_le_bytes());
        d.extend(s.3.to_le_bytes());
        d.extend(s.4.to_le_bytes());
        d.extend(s.5.to_le_bytes());
    }
    fw[desc..desc + d.len()].copy_from_slice(&d);
    // Table: [offset entry: u32 + u16 len + guid] [footer: u16 table len + guid] [32 bytes].
    let mut table = ((len - desc) as u32).to_le_bytes().to_vec();
    table.extend(22u16.to_le_bytes());
    table.extend(guid(TDX_OFFSET));
    table.extend(((22 + 18) as u16).to_le_bytes());
    table.extend(guid(FOOTER));
    let start = len - 32 - table.len();
    fw[start..len - 32].copy_from_slice(&table);
    fw
}

fn ovmf_like() -> Vec<Sec> {
    vec![
        (0x0000, 0x2000, 0xFFFF_E000, 0x2000, 0, 1),
        (0x2000, 0x1000, 0xFFFF_D000, 0x1000, 1, 0),
        (0, 0, 0x80_0000, 0x3000, 3, 0),
        (0, 0, 0x80_9000, 0x2000, 2, 0),
    ]
}

/// Second, straightforward MRTD: every buffer spelled out, per-page order.
fn reference_mrtd(fw: &[u8], sections: &[Sec]) -> [u8; 48] {
    let mut stream = Vec::new();
    for &(off, _, gpa, mem, _, attr) in sections {
        for p in 0..mem / 4096 {
            let mut add = vec![0u8; 128];
            add[..12].copy_from_slice(b"MEM.PAGE.ADD");
            add[16..24].copy_from_slice(&(gpa + p * 4096).to_le_bytes());
            stream.extend(add);
            if attr & 1 == 1 {
                for c in 0..16u64 {
                    let mut ext = vec![0u8; 128];
                    ext[..9].copy_from_slice(b"MR.EXTEND");
                    ext[16..24].copy_from_slice(&(gpa + p * 4096 + c * 256).to_le_bytes());
                    stream.extend(ext);
                    let at = off as usize + (p * 4096 + c * 256) as usize;
                    stream.extend_from_slice(&fw[at..at + 256]);
                }
            }
        }
    }
    Sha384::digest(&stream).into()
}

#[test]
fn mrtd_matches_independent_recomputation() {
    let secs = ovmf_like();
    let fw = image(&secs);
    let got = Mrtd::from_tdvf(&fw).expect("mrtd");
    assert_eq!(got, reference_mrtd(&fw, &secs));
    let two = Mrtd::from_tdvf_with_order(&fw, PageAddOrder::TwoPass).expect("mrtd");
    assert_ne!(
        got, two,
        "orders differ once a measured section has > 1 page"
    );
}

#[test]
fn metadata_is_parsed_in_order() {
    let fw = image(&ovmf_like());
    let m = TdvfMetadata::parse(&fw).expect("parse");
    assert_eq!(m.sections.len(), 4);
    assert_eq!(m.sections[0].section_type, TdvfSectionType::Bfv);
    assert!(m.sections[0].mr_extend);
    assert_eq!(m.sections[3].memory_address, 0x80_9000);
}

#[test]
fn tampered_images_are_refused_one_reason_each() {
    let good = image(&ovmf_like());
    let n = good.len();
    type Case = (
        &'static str,
        Box<dyn Fn(&mut Vec<u8>)>,
        fn(&TdxLaunchError) -> bool,
    );
    let cases: Vec<Case> = vec![
        ("footer", Box::new(move |f| f[n - 40] ^= 1), |e| {
            matches!(e, TdxLaunchError::NoGuidTableFooter)
        }),
        ("offset guid", Box::new(move |f| f[n - 60] ^= 1), |e| {
            matches!(e, TdxLaunchError::NoTdvfMetadata)
        }),
        ("signature", Box::new(|f| f[0x8000] = b'X'), |e| {
            matches!(e, TdxLaunchError::BadSignature { .. })
        }),
        ("version", Box::new(|f| f[0x8008] = 2), |e| {
            matches!(e, TdxLaunchError::UnsupportedVersion(2))
        }),
        ("type", Box::new(|f| f[0x8010 + 24] = 5), |e| {
            matches!(
                e,
                TdxLaunchError::UnsupportedSectionType {
                    index: 0,
                    section_type: 5
                }
            )
        }),
        ("page.aug", Box::new(|f| f[0x8010 + 28] = 3), |e| {
            matches!(e, TdxLaunchError::UnsupportedAttributes { index: 0, .. })
        }),
        ("misaligned", Box::new(|f| f[0x8010 + 8] = 0x10), |e| {
            matches!(e, TdxLaunchError::SectionMisaligned { index: 0, .. })
        }),
        ("out of bounds", Box::new(|f| f[0x8010 + 3] = 0x7f), |e| {
            matches!(e, TdxLaunchError::SectionOutOfBounds { index: 0, .. })
        }),
        ("raw > mem", Box::new(|f| f[0x8010 + 4 + 2] = 0x10), |e| {
            matches!(e, TdxLaunchError::BadRawSize { index: 0, .. })
        }),
        ("tiny", Box::new(|f| f.truncate(40)), |e| {
            matches!(e, TdxLaunchError::FirmwareTooSmall { len: 40 })
        }),
        (
            "metadata offset",
            Box::new(move |f| f[n - 72..n - 68].copy_from_slice(&0x00FF_FFFF_u32.to_le_bytes())),
            |e| matches!(e, TdxLaunchError::MetadataOutOfBounds { .. }),
        ),
    ];
    for (name, tamper, expect) in cases {
        let mut fw = good.clone();
        tamper(&mut fw);
        let err = Mrtd::from_tdvf(&fw).expect_err(name);
        assert!(expect(&err), "{name}: unexpected {err:?}");
    }
}

#[test]
fn td_hob_layout_for_small_and_large_memory() {
    let m = TdvfMetadata::parse(&image(&ovmf_like())).expect("parse");
    // 1 GiB: [0,8M) unaccepted, [8M,8M+12K) accepted, [+12K, 0x809000) unaccepted,
    // [0x809000, +8K) accepted, rest unaccepted → 5 resource HOBs.
    let hob = td_hob(&m, 1 << 30).expect("hob");
    assert_eq!(hob.len(), 56 + 5 * 48);
    assert_eq!(&hob[0..8], &[1, 0, 56, 0, 0, 0, 0, 0]);
    let end = u64::from_le_bytes(hob[48..56].try_into().expect("8"));
    assert_eq!(end, 0x80_9000 + 56 + 5 * 48 + 8);
    let last = &hob[56 + 4 * 48..];
    assert_eq!(u32::from_le_bytes(last[24..28].try_into().expect("4")), 7);
    assert_eq!(
        u64::from_le_bytes(last[32..40].try_into().expect("8")),
        0x80_b000
    );
    assert_eq!(
        u64::from_le_bytes(last[40..48].try_into().expect("8")),
        (1 << 30) - 0x80_b000
    );
    // 4 GiB: low RAM ends at 2 GiB, 2 GiB more at 4 GiB → 6 resource HOBs.
    let hob = td_hob(&m, 4 << 30).expect("hob");
    assert_eq!(hob.len(), 56 + 6 * 48);
    let last = &hob[56 + 5 * 48..];
    assert_eq!(
        u64::from_le_bytes(last[32..40].try_into().expect("8")),
        4 << 30
    );
    assert_eq!(
        u64::from_le_bytes(last[40..48].try_into().expect("8")),
        2 << 30
    );
}

/// Digests Phala's dstack-mr hard-codes for OVMF before edk2-stable202505 (tdvf.rs): the
/// Boot0000 (UiApp) EV_EFI_VARIABLE_BOOT digest, which we rebuild from the load option.
const DSTACK_BOOT0000: &str = "23ada07f5261f12f34a0bd8e46760962d6b4d576a416f1fea1c64bc656b1d28eacf7047ae6e967c58fd2a98bfa74c298";
/// dstack-mr's CFV digest (the empty variable store of its OVMF build).
const DSTACK_CFV: &str = "344bc51c980ba621aaa00da3ed7436f7d6e549197dfe699515dfa2c6583d95e6412af21c097d473155875ffd561d6790";

#[test]
fn boot0000_load_option_matches_dstack_vector() {
    assert_eq!(
        hex::encode(uefi::sha384(&uefi::ui_app_load_option())),
        DSTACK_BOOT0000
    );
}

/// A minimal PE32+ "bzImage": HdrS header fields, one section, optional trailing data.
fn tiny_kernel(trailer: usize, cert: u32) -> Vec<u8> {
    let mut k = vec![0u8; 0x1400 + trailer];
    k[0] = b'M';
    k[1] = b'Z';
    k[0x3c..0x40].copy_from_slice(&0x80u32.to_le_bytes());
    k[0x202..0x206].copy_from_slice(b"HdrS");
    k[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
    k[0x211] = 0x01;
    k[0x236..0x238].copy_from_slice(&0x0040u16.to_le_bytes());
    k[0x80..0x84].copy_from_slice(b"PE\0\0");
    k[0x86..0x88].copy_from_slice(&1u16.to_le_bytes()); // sections
    k[0x94..0x96].copy_from_slice(&240u16.to_le_bytes()); // SizeOfOptionalHeader
    let opt = 0x98;
    k[opt..opt + 2].copy_from_slice(&0x20bu16.to_le_bytes());
    k[opt + 60..opt + 64].copy_from_slice(&0x1000u32.to_le_bytes()); // SizeOfHeaders
    k[opt + 64..opt + 68].copy_from_slice(&0xdead_beefu32.to_le_bytes()); // CheckSum
    k[opt + 108..opt + 112].copy_from_slice(&16u32.to_le_bytes());
    k[opt + 112 + 36..opt + 112 + 40].copy_from_slice(&cert.to_le_bytes()); // cert size
    let sec = opt + 240;
    k[sec + 16..sec + 20].copy_from_slice(&0x400u32.to_le_bytes());
    k[sec + 20..sec + 24].copy_from_slice(&0x1000u32.to_le_bytes());
    for (i, b) in k.iter_mut().enumerate().skip(0x1000) {
        *b = (i % 13) as u8;
    }
    k
}

#[test]
fn authenticode_skips_checksum_and_cert_entry_and_cert_table() {
    let k = tiny_kernel(0x30, 0x10);
    let opt = 0x98;
    let mut h = Sha384::new();
    h.update(&k[..opt + 64]);
    h.update(&k[opt + 68..opt + 112 + 32]);
    h.update(&k[opt + 112 + 40..0x1000]);
    h.update(&k[0x1000..0x1400]);
    h.update(&k[0x1400..k.len() - 0x10]);
    let want: [u8; 48] = h.finalize().into();
    assert_eq!(authenticode_sha384(&k).expect("pe"), want);
    let mut other = k.clone();
    other[opt + 64] ^= 0xff; // CheckSum is not hashed.
    assert_eq!(authenticode_sha384(&other).expect("pe"), want);
    let mut bad = k.clone();
    bad[0x80] = b'X';
    assert!(matches!(
        authenticode_sha384(&bad),
        Err(TdxLaunchError::MalformedPe { .. })
    ));
}

#[test]
fn qemu_header_patch_places_initrd_below_low_ram() {
    let k = tiny_kernel(0, 0);
    let p = kernel::qemu_patched_kernel(&k, 0x12345, "console=ttyS0", 1 << 30).expect("patch");
    assert_eq!(p[0x210], 0xb0);
    assert_eq!(p[0x211], 0x81);
    assert_eq!(&p[0x224..0x226], &0xfe00u16.to_le_bytes());
    assert_eq!(&p[0x228..0x22c], &0x2_0000u32.to_le_bytes());
    let max = (1u64 << 30) - 0x2_8000 - 1;
    let addr = (max - 0x12345) & !0xfff;
    assert_eq!(&p[0x218..0x21c], &(addr as u32).to_le_bytes());
    assert_eq!(&p[0x21c..0x220], &0x12345u32.to_le_bytes());
    // ≥ 0xB0000000 of RAM: low RAM is 2 GiB.
    let p = kernel::qemu_patched_kernel(&k, 0x1000, "", 8 << 30).expect("patch");
    let addr = ((0x8000_0000u64 - 0x2_8000 - 1) - 0x1000) & !0xfff;
    assert_eq!(&p[0x218..0x21c], &(addr as u32).to_le_bytes());
    assert!(matches!(
        kernel::qemu_patched_kernel(&k, 1, "vga=791", 1 << 30),
        Err(TdxLaunchError::UnsupportedCmdline { .. })
    ));
}

#[test]
fn rtmrs_replay_the_event_log() {
    let fw = image(&ovmf_like());
    let k = tiny_kernel(0, 0);
    let acpi = QemuAcpiDigests::from_blobs(b"loader", &[b"rsdp", b"tables"]);
    let inputs = TdxLaunchInputs {
        firmware: &fw,
        kernel: &k,
        initrd: b"initrd bytes",
        cmdline: "console=ttyS0",
        memory_size: 1 << 30,
        acpi: &acpi,
        page_add_order: PageAddOrder::PerPage,
    };
    let log = TdxEventLog::build(&inputs).expect("log");
    assert_eq!(log.rtmr[0].len(), 2 + 5 + 1 + 3 + 2);
    assert_eq!(log.rtmr[1].len(), 5);
    // RTMR2 by hand: UTF-16LE "console=ttyS0 initrd=initrd\0", then the initrd.
    let opts: Vec<u8> = "console=ttyS0 initrd=initrd\0"
        .encode_utf16()
        .flat_map(|u| u.to_le_bytes())
        .collect();
    let mut mr = [0u8; 48];
    for d in [Sha384::digest(&opts), Sha384::digest(b"initrd bytes")] {
        let mut h = Sha384::new();
        h.update(mr);
        h.update(d);
        mr = h.finalize().into();
    }
    let m = TdxMeasurements::compute(&inputs).expect("measure");
    assert_eq!(m.rtmr[2], mr);
    assert_eq!(m.rtmr[3], [0; 48]);
    assert_eq!(m.rtmr[0], replay(&log.rtmr[0]));
    // The CFV event is the hash of the CFV section's raw bytes.
    assert_eq!(log.rtmr[0][1].digest, uefi::sha384(&fw[0x2000..0x3000]));
    assert!(kernel_load_options("", false).is_none());
}

/// The real OVMF IntelTdx image that `CLOISTER_INTELTDX_FW` names (`cargo xtask test` builds it
/// in its set-up step and sets the variable).
#[test]
#[ignore = "full tier: the built IntelTdx firmware (cargo xtask test)"]
fn real_inteltdx_firmware() {
    let path = std::env::var("CLOISTER_INTELTDX_FW").expect(
        "CLOISTER_INTELTDX_FW must name the built IntelTdx firmware: run the full tier with \
         `cargo xtask test`, whose set-up step builds it and sets the variable",
    );
    let fw = std::fs::read(&path).expect("read firmware");
    let m = TdvfMetadata::parse(&fw).expect("TDVF metadata");
    for s in &m.sections {
        eprintln!("section {s:x?}");
    }
    let mrtd = Mrtd::from_tdvf(&fw).expect("mrtd");
    eprintln!("MRTD (per page) {}", hex::encode(mrtd));
    let two = Mrtd::from_tdvf_with_order(&fw, PageAddOrder::TwoPass).expect("mrtd");
    eprintln!("MRTD (two pass) {}", hex::encode(two));
    let cfv = m.single(TdvfSectionType::Cfv).expect("cfv");
    let start = cfv.data_offset as usize;
    let cfv_digest = uefi::sha384(&fw[start..start + cfv.raw_data_size as usize]);
    eprintln!("CFV digest {}", hex::encode(cfv_digest));
    assert_eq!(
        hex::encode(cfv_digest),
        DSTACK_CFV,
        "empty variable store differs from dstack's"
    );
    for mem in [1u64 << 30, 2 << 30, 4 << 30] {
        let hob = td_hob(&m, mem).expect("hob");
        eprintln!(
            "TD HOB digest (mem {mem:#x}) {}",
            hex::encode(uefi::sha384(&hob))
        );
    }
}
