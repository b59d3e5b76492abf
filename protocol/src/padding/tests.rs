use super::*;

/// RFC 9292 §5.1's known-length request (GET https:///hello.txt with user-agent, host and
/// accept-language), byte for byte.
const RFC_9292_KNOWN_LENGTH_REQUEST: &str = "0003474554056874747073000a2f6865\
    6c6c6f2e747874406c0a757365722d61\
    67656e74346375726c2f372e31362e33\
    206c69626375726c2f372e31362e3320\
    4f70656e53534c2f302e392e376c207a\
    6c69622f312e322e3304686f73740f77\
    77772e6578616d706c652e636f6d0f61\
    63636570742d6c616e67756167650665\
    6e2c206d690000";

fn rfc_example() -> Vec<u8> {
    hex::decode(RFC_9292_KNOWN_LENGTH_REQUEST).expect("hex")
}

#[test]
fn the_rfc_example_reads_with_zero_padding_and_is_refused_with_any_other() {
    let bare = rfc_example();
    let m = read_padded(&bare).expect("the example as published");
    assert_eq!(m.control().method(), Some(&b"GET"[..]));
    assert_eq!(m.control().path(), Some(&b"/hello.txt"[..]));
    assert_eq!(m.header().get(b"accept-language"), Some(&b"en, mi"[..]));

    let mut padded = bare.clone();
    padded.resize(1024, 0);
    let m = read_padded(&padded).expect("zero padding is allowed (RFC 9292 §3.8)");
    assert_eq!(m.control().path(), Some(&b"/hello.txt"[..]));

    let mut dirty = padded;
    dirty[1000] = 1;
    assert_eq!(
        read_padded(&dirty).err(),
        Some(PaddingError::NonZeroPadding)
    );
    assert!(matches!(read_padded(&[0x40]), Err(PaddingError::Decode(_))));
}

#[test]
fn outer_messages_take_the_smallest_bucket_that_holds_them() {
    for (len, want) in [
        (0, 2048),
        (2048, 2048),
        (2049, 4096),
        (300 << 10, 512 << 10),
        (512 << 10, 512 << 10),
        ((512 << 10) + 1, 1 << 20),
        ((1 << 20) + 1, (3 << 20) / 2),
    ] {
        assert_eq!(padded_len(len, Layer::Outer), want, "{len}");
    }
    assert!(fits_one_bucket(LARGEST, Layer::Outer));
    assert!(!fits_one_bucket(LARGEST + 1, Layer::Outer));
}

#[test]
fn inner_messages_leave_the_outer_reserve_free() {
    for (len, want) in [
        (0, 1024),
        (1024, 1024),
        (1025, 3072),
        (3072, 3072),
        (3073, 7168),
        ((511 << 10) + 1, (1 << 20) - 1024),
    ] {
        assert_eq!(padded_len(len, Layer::Inner), want, "{len}");
    }
    assert!(fits_one_bucket(511 << 10, Layer::Inner));
    assert!(!fits_one_bucket((511 << 10) + 1, Layer::Inner));
}

#[test]
fn the_outer_size_follows_from_the_inner_bucket_alone() {
    // An inner message padded for bucket b, sealed (55 bytes of OHTTP) and wrapped with a
    // token, a path and headers of any length the reserve holds, lands in exactly b.
    for b in BUCKETS {
        let inner = padded_len(b - OUTER_RESERVE - 100, Layer::Inner);
        assert_eq!(inner, b - OUTER_RESERVE);
        for wrapping in [55 + 200, 55 + 600, OUTER_RESERVE] {
            assert_eq!(
                padded_len(inner + wrapping, Layer::Outer),
                b,
                "{b} {wrapping}"
            );
        }
    }
}

#[test]
fn messages_of_different_lengths_in_one_bucket_are_the_same_size() {
    let sizes: Vec<usize> = [10usize, 200, 900]
        .iter()
        .map(|n| {
            let mut m = Message::request(
                b"POST".to_vec(),
                b"https".to_vec(),
                b"cloister-guest".to_vec(),
                b"/v1/summarize".to_vec(),
            );
            m.write_content(vec![b'x'; *n]);
            let padded = write_padded(&m, Layer::Inner).expect("writes");
            let back = read_padded(&padded).expect("reads");
            assert_eq!(back.content().len(), *n);
            padded.len()
        })
        .collect();
    assert_eq!(sizes, [1024, 1024, 1024]);
    assert_eq!(padded_len(900, Layer::Outer), 2048);
}
