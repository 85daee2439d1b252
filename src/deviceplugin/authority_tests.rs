use super::*;

/// A client's HEADERS frame (with END_HEADERS unless `continued`).
fn headers_frame(stream: u32, flags: u8, block: &[u8]) -> (u8, u8, u32, Vec<u8>) {
    (HEADERS, flags, stream, block.to_vec())
}

/// Runs frames through a rewriter; returns the server's bytes.
fn rewrite(rewriter: &mut Rewriter, frames: &[(u8, u8, u32, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (kind, flags, stream, payload) in frames {
        rewriter
            .frame(*kind, *flags, *stream, payload, &mut out)
            .expect("frame");
    }
    out
}

/// Splits the server's bytes into frames.
fn frames(mut bytes: &[u8]) -> Vec<(u8, u8, u32, Vec<u8>)> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let len = u32::from_be_bytes([0, bytes[0], bytes[1], bytes[2]]) as usize;
        let stream = u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]);
        out.push((bytes[3], bytes[4], stream, bytes[9..9 + len].to_vec()));
        bytes = &bytes[9 + len..];
    }
    out
}

fn header_list(decoder: &mut loona_hpack::Decoder<'static>, block: &[u8]) -> Vec<(String, String)> {
    decoder
        .decode(block)
        .expect("server-side decode")
        .into_iter()
        .map(|(n, v)| {
            (
                String::from_utf8(n).expect("name"),
                String::from_utf8(v).expect("value"),
            )
        })
        .collect()
}

/// ":method: POST" (static 3), then ":authority" (static name 1) with incremental indexing.
fn first_block(authority: &str) -> Vec<u8> {
    let mut b = vec![0x83, 0x41];
    put_str(&mut b, authority.as_bytes());
    b.push(0x44); // :path (static name 4), incremental indexing
    put_str(&mut b, b"/v1beta1.DevicePlugin/GetDevicePluginOptions");
    b
}

#[test]
fn a_socket_path_authority_becomes_localhost_and_the_rest_is_kept() {
    let mut rewriter = Rewriter::new();
    let block = first_block("%2Ftmp%2Fdp%2Fhal0-igpu.sock");
    let out = rewrite(
        &mut rewriter,
        &[headers_frame(1, END_HEADERS | END_STREAM, &block)],
    );
    let got = frames(&out);
    assert_eq!(got.len(), 1);
    let (kind, flags, stream, payload) = &got[0];
    assert_eq!(
        (*kind, *flags, *stream),
        (HEADERS, END_HEADERS | END_STREAM, 1)
    );
    let mut server = loona_hpack::Decoder::new();
    assert_eq!(
        header_list(&mut server, payload),
        [
            (":method".to_string(), "POST".to_string()),
            (":authority".to_string(), "localhost".to_string()),
            (
                ":path".to_string(),
                "/v1beta1.DevicePlugin/GetDevicePluginOptions".to_string()
            ),
        ]
    );
}

#[test]
fn later_blocks_indexing_the_clients_dynamic_table_are_resolved() {
    let mut rewriter = Rewriter::new();
    let mut server = loona_hpack::Decoder::new();
    let first = rewrite(
        &mut rewriter,
        &[headers_frame(
            1,
            END_HEADERS,
            &first_block("/run/dp/hal0-npu.sock"),
        )],
    );
    header_list(&mut server, &frames(&first)[0].3);
    // The client's dynamic table: 62 = :path, 63 = :authority (newest first).
    let second = rewrite(
        &mut rewriter,
        &[headers_frame(3, END_HEADERS, &[0x83, 0xbf, 0xbe])],
    );
    let got = frames(&second);
    assert_eq!(
        header_list(&mut server, &got[0].3),
        [
            (":method".to_string(), "POST".to_string()),
            (":authority".to_string(), "localhost".to_string()),
            (
                ":path".to_string(),
                "/v1beta1.DevicePlugin/GetDevicePluginOptions".to_string()
            ),
        ]
    );
    assert_eq!(got[0].2, 3);
}

#[test]
fn a_valid_authority_is_left_alone() {
    let mut rewriter = Rewriter::new();
    let out = rewrite(
        &mut rewriter,
        &[headers_frame(
            1,
            END_HEADERS,
            &first_block("localhost:1234"),
        )],
    );
    let mut server = loona_hpack::Decoder::new();
    let list = header_list(&mut server, &frames(&out)[0].3);
    assert_eq!(
        list[1],
        (":authority".to_string(), "localhost:1234".to_string())
    );
}

#[test]
fn padding_priority_and_continuations_are_handled() {
    let mut rewriter = Rewriter::new();
    let block = first_block("/a/b.sock");
    let (head, tail) = block.split_at(3);
    // PADDED (2 bytes of padding) + PRIORITY, the block split over a CONTINUATION.
    let mut payload = vec![2, 0, 0, 0, 5, 16];
    payload.extend_from_slice(head);
    payload.extend_from_slice(&[0, 0]);
    let out = rewrite(
        &mut rewriter,
        &[
            (HEADERS, PADDED | PRIORITY | END_STREAM, 5, payload),
            (CONTINUATION, END_HEADERS, 5, tail.to_vec()),
        ],
    );
    let got = frames(&out);
    assert_eq!(got.len(), 1);
    let (kind, flags, stream, payload) = &got[0];
    assert_eq!(
        (*kind, *flags, *stream),
        (HEADERS, PRIORITY | END_STREAM | END_HEADERS, 5)
    );
    assert_eq!(&payload[..5], &[0, 0, 0, 5, 16]);
    let mut server = loona_hpack::Decoder::new();
    assert_eq!(header_list(&mut server, &payload[5..])[1].1, "localhost");
}

#[test]
fn a_large_block_is_split_into_continuations_and_other_frames_pass_through() {
    let mut rewriter = Rewriter::new();
    let mut block = first_block("/x.sock");
    block.push(0x00); // literal without indexing, new name
    put_str(&mut block, b"x-big");
    put_str(&mut block, &vec![b'v'; 40_000]);
    let data = (0x0, 0x1, 1, b"grpc-payload".to_vec());
    let out = rewrite(
        &mut rewriter,
        &[headers_frame(1, END_HEADERS, &block), data.clone()],
    );
    let got = frames(&out);
    assert_eq!(got.len(), 4, "HEADERS + 2 CONTINUATION + DATA");
    assert_eq!((got[0].0, got[0].1), (HEADERS, 0));
    assert_eq!((got[1].0, got[1].1), (CONTINUATION, 0));
    assert_eq!((got[2].0, got[2].1), (CONTINUATION, END_HEADERS));
    assert!(got.iter().all(|f| f.3.len() <= MAX_FRAME));
    assert_eq!(got[3], data);
    let joined: Vec<u8> = got[..3].iter().flat_map(|f| f.3.clone()).collect();
    let mut server = loona_hpack::Decoder::new();
    let list = header_list(&mut server, &joined);
    assert_eq!(list[1].1, "localhost");
    assert_eq!(list[3].1.len(), 40_000);
}

#[test]
fn a_frame_inside_a_header_block_is_refused() {
    let mut rewriter = Rewriter::new();
    let mut out = Vec::new();
    rewriter
        .frame(HEADERS, 0, 1, &first_block("/x.sock"), &mut out)
        .expect("first fragment");
    let err = rewriter
        .frame(0x0, 0, 1, b"data", &mut out)
        .expect_err("DATA inside a header block");
    assert!(matches!(err, AuthorityError::InterleavedFrame(0)), "{err}");
}

#[test]
fn integers_use_the_prefix_and_continuation_bytes() {
    let mut out = Vec::new();
    put_int(&mut out, 0, 7, 10);
    put_int(&mut out, 0, 5, 1337);
    assert_eq!(out, [10, 31, 154, 10]);
}
