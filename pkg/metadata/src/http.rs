//! A small blocking HTTP/1.1 client for metadata servers: `GET` over a plain `TcpStream`, one
//! request per connection, with a deadline for the whole exchange. Bodies may be sized by
//! `Content-Length`, chunked, or end with the connection.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// Largest response accepted (headers and body): userdata is small.
pub const MAX_RESPONSE: usize = 16 << 20;

/// Why a `GET` failed.
#[derive(Debug)]
pub enum Error {
    /// The URL is not `http://HOST[:PORT]/PATH`.
    BadUrl(String),
    /// Connecting, sending or receiving failed (including timeouts).
    Io(String, io::Error),
    /// The server answered with a status other than 200.
    Status(String, u16),
    /// The response is not HTTP/1.x this client understands, or is too large.
    Malformed(String, String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::BadUrl(url) => write!(f, "{url}: not an http://HOST[:PORT]/PATH URL"),
            Error::Io(url, e) if e.kind() == io::ErrorKind::TimedOut || e.kind() == io::ErrorKind::WouldBlock => {
                write!(f, "{url}: timed out ({e})")
            }
            Error::Io(url, e) => write!(f, "{url}: {e}"),
            Error::Status(url, status) => write!(f, "{url}: HTTP status {status}"),
            Error::Malformed(url, why) => write!(f, "{url}: bad response: {why}"),
        }
    }
}

impl std::error::Error for Error {}

impl Error {
    /// A status answer (the server is there, the thing asked for is not): not worth retrying.
    pub fn is_status(&self) -> bool {
        matches!(self, Error::Status(..))
    }
}

/// The parts of an `http://` URL.
#[derive(Debug, PartialEq, Eq)]
struct Url<'a> {
    /// `HOST[:PORT]` as written (the `Host` header).
    authority: &'a str,
    host: &'a str,
    port: u16,
    path: &'a str,
}

fn parse_url(url: &str) -> Option<Url<'_>> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = match rest.find('/') {
        Some(slash) => (&rest[..slash], &rest[slash..]),
        None => (rest, "/"),
    };
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']')?;
        match after {
            "" => (host, 80),
            port => (host, port.strip_prefix(':')?.parse().ok()?),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, port.parse().ok()?),
            None => (authority, 80),
        }
    };
    if host.is_empty() || path.contains(char::is_whitespace) {
        return None;
    }
    Some(Url {
        authority,
        host,
        port,
        path,
    })
}

/// `GET url` with extra `headers` (a `Host` among them replaces the one from the URL); the whole
/// exchange must finish within `timeout`. Returns the body of a 200 answer.
pub fn get(url: &str, headers: &[(&str, &str)], timeout: Duration) -> Result<Vec<u8>, Error> {
    request("GET", url, headers, timeout)
}

/// How a provider asks its server: per-request deadline, tries when the server cannot be reached
/// (connection errors, timeouts; an HTTP status is an answer and is not retried), pause between.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// Deadline of one request.
    pub timeout: Duration,
    /// Tries of one request (at least 1).
    pub attempts: u32,
    /// Pause between tries.
    pub delay: Duration,
}

impl Default for Retry {
    /// 2 s per request (LinuxKit's), 2 tries, 0.5 s apart.
    fn default() -> Self {
        Retry {
            timeout: Duration::from_secs(2),
            attempts: 2,
            delay: Duration::from_millis(500),
        }
    }
}

/// [`get`], tried as `retry` says.
pub fn get_retrying(url: &str, headers: &[(&str, &str)], retry: Retry) -> Result<Vec<u8>, Error> {
    let mut attempt = 1;
    loop {
        match get(url, headers, retry.timeout) {
            Err(e) if !e.is_status() && attempt < retry.attempts.max(1) => {
                debug!("{e}; trying again");
                attempt += 1;
                std::thread::sleep(retry.delay);
            }
            result => return result,
        }
    }
}

/// `PUT url` with an empty body (the EC2 IMDSv2 token request), as [`get`].
pub fn put_empty(url: &str, headers: &[(&str, &str)], timeout: Duration) -> Result<Vec<u8>, Error> {
    request("PUT", url, headers, timeout)
}

fn request(method: &str, url: &str, headers: &[(&str, &str)], timeout: Duration) -> Result<Vec<u8>, Error> {
    let parsed = parse_url(url).ok_or_else(|| Error::BadUrl(url.to_string()))?;
    let io_err = |e| Error::Io(url.to_string(), e);
    let deadline = Instant::now() + timeout;
    let addrs: Vec<SocketAddr> = match parsed.host.parse::<std::net::IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, parsed.port)],
        Err(_) => (parsed.host, parsed.port).to_socket_addrs().map_err(io_err)?.collect(),
    };
    let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{} has no address", parsed.host));
    let mut stream = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, remaining(deadline).map_err(io_err)?) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = e,
        }
    }
    let mut stream = stream.ok_or_else(|| io_err(last))?;

    let mut request = format!("{method} {} HTTP/1.1\r\n", parsed.path);
    if method != "GET" {
        request.push_str("Content-Length: 0\r\n");
    }
    if !headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("host")) {
        request.push_str(&format!("Host: {}\r\n", parsed.authority));
    }
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("User-Agent: moby-metadata\r\nAccept: */*\r\nConnection: close\r\n\r\n");
    stream
        .set_write_timeout(Some(remaining(deadline).map_err(io_err)?))
        .map_err(io_err)?;
    stream.write_all(request.as_bytes()).map_err(io_err)?;

    let mut buffer = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        stream
            .set_read_timeout(Some(remaining(deadline).map_err(io_err)?))
            .map_err(io_err)?;
        let n = match stream.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err(e)),
        };
        buffer.extend_from_slice(&chunk[..n]);
        if buffer.len() > MAX_RESPONSE {
            return Err(Error::Malformed(
                url.to_string(),
                format!("more than {MAX_RESPONSE} bytes"),
            ));
        }
        let eof = n == 0;
        match parse_response(&buffer, eof) {
            Ok(Some((status, body))) => {
                return if status == 200 {
                    Ok(body)
                } else {
                    Err(Error::Status(url.to_string(), status))
                };
            }
            Ok(None) if eof => {
                return Err(Error::Malformed(
                    url.to_string(),
                    "the connection closed before the response was complete".into(),
                ))
            }
            Ok(None) => {}
            Err(why) => return Err(Error::Malformed(url.to_string(), why)),
        }
    }
}

fn remaining(deadline: Instant) -> io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(io::Error::new(io::ErrorKind::TimedOut, "deadline passed"))
    } else {
        Ok(left)
    }
}

/// The status and body once `buffer` holds a whole response (`eof`: nothing more will come).
fn parse_response(buffer: &[u8], eof: bool) -> Result<Option<(u16, Vec<u8>)>, String> {
    let Some(end) = find(buffer, b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&buffer[..end]).map_err(|_| "the headers are not UTF-8".to_string())?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(format!("status line {status_line:?} is not HTTP/1.x"));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("status line {status_line:?} has no status code"))?;
    let mut length = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!("header line {line:?} has no ':'"));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .parse::<usize>()
                    .map_err(|_| format!("Content-Length {value:?} is not a number"))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        }
    }
    let body = &buffer[end + 4..];
    let body = if chunked {
        decode_chunked(body)?
    } else {
        match length {
            Some(length) if body.len() >= length => Some(body[..length].to_vec()),
            Some(_) => None,
            None if eof => Some(body.to_vec()),
            None => None,
        }
    };
    Ok(body.map(|body| (status, body)))
}

/// A chunked body, or `None` while it is incomplete.
fn decode_chunked(mut body: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let mut out = Vec::new();
    loop {
        let Some(line_end) = find(body, b"\r\n") else {
            return Ok(None);
        };
        let line = std::str::from_utf8(&body[..line_end]).map_err(|_| "a chunk size is not text".to_string())?;
        let size_text = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| format!("chunk size {size_text:?} is not hex"))?;
        body = &body[line_end + 2..];
        if size == 0 {
            // Trailers end with an empty line.
            return Ok(if body.starts_with(b"\r\n") || find(body, b"\r\n\r\n").is_some() {
                Some(out)
            } else {
                None
            });
        }
        if body.len() < size + 2 {
            return Ok(None);
        }
        out.extend_from_slice(&body[..size]);
        if &body[size..size + 2] != b"\r\n" {
            return Err("a chunk does not end with CRLF".into());
        }
        body = &body[size + 2..];
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::thread;

    /// Serves one connection with `response`, returning the request it read.
    fn serve_once(response: Vec<u8>) -> (String, thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/path/x?y=1", listener.local_addr().unwrap());
        let handle = thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut byte = [0u8; 1];
            while !request.ends_with(b"\r\n\r\n") {
                if conn.read(&mut byte).unwrap() == 0 {
                    break;
                }
                request.push(byte[0]);
            }
            for piece in response.chunks(7) {
                conn.write_all(piece).unwrap();
                conn.flush().unwrap();
            }
            String::from_utf8(request).unwrap()
        });
        (url, handle)
    }

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("http://169.254.169.254/computeMetadata/v1/"),
            Some(Url {
                authority: "169.254.169.254",
                host: "169.254.169.254",
                port: 80,
                path: "/computeMetadata/v1/"
            })
        );
        assert_eq!(parse_url("http://127.0.0.1:8080").unwrap().path, "/");
        assert_eq!(parse_url("http://[::1]:81/a").unwrap().host, "::1");
        assert_eq!(parse_url("http://[::1]:81/a").unwrap().port, 81);
        assert!(parse_url("https://x/").is_none());
        assert!(parse_url("http://x:port/").is_none());
        assert!(parse_url("http:///a").is_none());
    }

    #[test]
    fn content_length_body_and_headers_sent() {
        let (url, server) = serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX: y\r\n\r\nhello".to_vec());
        let body = get(&url, &[("Metadata-Flavor", "Google")], Duration::from_secs(5)).unwrap();
        assert_eq!(body, b"hello");
        let request = server.join().unwrap();
        assert!(request.starts_with("GET /path/x?y=1 HTTP/1.1\r\n"), "{request}");
        assert!(request.contains("\r\nMetadata-Flavor: Google\r\n"), "{request}");
        assert!(request.contains("\r\nHost: 127.0.0.1:"), "{request}");
        assert!(request.contains("\r\nConnection: close\r\n"), "{request}");
    }

    #[test]
    fn host_header_can_be_replaced() {
        let (url, server) = serve_once(b"HTTP/1.0 200 OK\r\n\r\nto the end".to_vec());
        let body = get(&url, &[("Host", "metadata.google.internal")], Duration::from_secs(5)).unwrap();
        assert_eq!(body, b"to the end", "no length: the body ends with the connection");
        let request = server.join().unwrap();
        assert_eq!(request.matches("Host:").count(), 1, "{request}");
        assert!(request.contains("\r\nHost: metadata.google.internal\r\n"), "{request}");
    }

    #[test]
    fn chunked_body() {
        let (url, server) = serve_once(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n6;ext=1\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\n\r\n"
                .to_vec(),
        );
        assert_eq!(
            get(&url, &[], Duration::from_secs(5)).unwrap(),
            b"Wikipedia in \r\n\r\nchunks."
        );
        server.join().unwrap();
    }

    #[test]
    fn status_other_than_200_is_an_error() {
        let (url, server) = serve_once(b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found".to_vec());
        let err = get(&url, &[], Duration::from_secs(5)).unwrap_err();
        assert!(err.is_status());
        assert_eq!(err.to_string(), format!("{url}: HTTP status 404"));
        server.join().unwrap();
    }

    #[test]
    fn garbage_and_truncation_are_errors() {
        let (url, server) = serve_once(b"SSH-2.0-OpenSSH\r\n\r\n".to_vec());
        let err = get(&url, &[], Duration::from_secs(5)).unwrap_err();
        assert!(err.to_string().contains("not HTTP/1.x"), "{err}");
        server.join().unwrap();
        let (url, server) = serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort".to_vec());
        let err = get(&url, &[], Duration::from_secs(5)).unwrap_err();
        assert!(
            err.to_string().contains("closed before the response was complete"),
            "{err}"
        );
        server.join().unwrap();
    }

    #[test]
    fn a_silent_server_times_out_within_the_deadline() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let start = Instant::now();
        let err = get(&url, &[], Duration::from_millis(300)).unwrap_err();
        let took = start.elapsed();
        assert!(err.to_string().contains("timed out"), "{err}");
        assert!(took < Duration::from_secs(2), "took {took:?}");
        drop(listener);
    }

    #[test]
    fn refused_connection_is_an_io_error() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        drop(listener);
        let err = get(&url, &[], Duration::from_secs(2)).unwrap_err();
        assert!(matches!(err, Error::Io(..)), "{err}");
    }
}
