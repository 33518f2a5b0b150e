//! Lexical path functions with the exact semantics of Go's `path` / `path/filepath` (Unix), because
//! LinuxKit's entry names and PAX header names are computed with them and we must match byte for byte.

/// Go's `path.Clean`: collapses repeated slashes, drops `.` elements, resolves `..` lexically (kept at
/// the start of a relative path, dropped at the root of an absolute one) and removes a trailing slash.
/// The empty string becomes `.`.
pub fn clean(path: &str) -> String {
    if path.is_empty() {
        return ".".to_string();
    }
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    // Number of leading `..` elements in `parts` that cannot be cancelled (relative paths only).
    let mut fixed = 0;
    for element in path.split('/') {
        match element {
            "" | "." => {}
            ".." => {
                if parts.len() > fixed {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                    fixed += 1;
                }
            }
            name => parts.push(name),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

/// Go's `path.Join`: the non-empty elements joined with `/`, then cleaned; empty if all are empty.
pub fn join(elements: &[&str]) -> String {
    let non_empty: Vec<&str> = elements.iter().copied().filter(|e| !e.is_empty()).collect();
    if non_empty.is_empty() {
        return String::new();
    }
    clean(&non_empty.join("/"))
}

/// Go's `path.Split`: everything up to and including the last `/`, and the rest.
pub fn split(path: &str) -> (&str, &str) {
    match path.rfind('/') {
        Some(i) => path.split_at(i + 1),
        None => ("", path),
    }
}

/// The parent of an already cleaned relative path (`.` for a top-level name and for `.` itself), as
/// Go's `filepath.Dir` returns it for such input.
pub fn parent(clean_path: &str) -> &str {
    match clean_path.rfind('/') {
        Some(0) => "/",
        Some(i) => &clean_path[..i],
        None => ".",
    }
}

/// The last element of an already cleaned path, as Go's `filepath.Base` returns it for such input.
pub fn base(clean_path: &str) -> &str {
    if clean_path == "/" {
        return "/";
    }
    match clean_path.rfind('/') {
        Some(i) => &clean_path[i + 1..],
        None => clean_path,
    }
}

/// The strict ancestors of a cleaned relative path, nearest first, ending with `.`
/// (`a/b/c` gives `a/b`, `a`, `.`; `.` gives nothing), as Go's `filepath.Dir` loop visits them.
pub fn ancestors(clean_path: &str) -> impl Iterator<Item = &str> {
    let mut current = Some(clean_path);
    std::iter::from_fn(move || {
        let path = current?;
        let dir = parent(path);
        if dir == path {
            current = None;
            return None;
        }
        current = Some(dir);
        Some(dir)
    })
}

/// Go's `path.Dir`: everything up to the last `/`, cleaned (`.` when there is no `/`).
pub fn dir(path: &str) -> String {
    match path.rfind('/') {
        Some(slash) => clean(&path[..=slash]),
        None => ".".to_string(),
    }
}

/// Go's `filepath.Rel(base, target)` on Unix: `None` where Go returns an error (one path absolute
/// and the other not, or `base` needing to climb out of an unknown `..`).
pub fn rel(base: &str, target: &str) -> Option<String> {
    let base = clean(base);
    let target = clean(target);
    if base == target {
        return Some(".".to_string());
    }
    if base.starts_with('/') != target.starts_with('/') {
        return None;
    }
    let split = |path: &str| -> Vec<String> {
        if path == "." {
            return Vec::new();
        }
        path.trim_start_matches('/')
            .split('/')
            .filter(|part| !part.is_empty())
            .map(str::to_string)
            .collect()
    };
    let base_parts = split(&base);
    let target_parts = split(&target);
    let common = base_parts.iter().zip(&target_parts).take_while(|(b, t)| b == t).count();
    let climb = &base_parts[common..];
    if climb.first().is_some_and(|part| part == "..") {
        return None;
    }
    let mut result: Vec<&str> = climb.iter().map(|_| "..").collect();
    result.extend(target_parts[common..].iter().map(String::as_str));
    Some(result.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_matches_go() {
        // Expected values are Go's documented path.Clean results.
        let cases = [
            ("", "."),
            (".", "."),
            ("./", "."),
            ("/", "/"),
            ("//", "/"),
            ("abc", "abc"),
            ("abc/", "abc"),
            ("./abc/def/", "abc/def"),
            ("abc//def", "abc/def"),
            ("abc/./def", "abc/def"),
            ("abc/../def", "def"),
            ("abc/..", "."),
            ("abc/../..", ".."),
            ("../../abc", "../../abc"),
            ("a/../../b", "../b"),
            ("/../abc", "/abc"),
            ("/abc/../../def", "/def"),
            ("..", ".."),
            ("../..", "../.."),
            (".wh..wh..opq", ".wh..wh..opq"),
        ];
        for (input, want) in cases {
            assert_eq!(clean(input), want, "clean({input:?})");
        }
    }

    #[test]
    fn join_matches_go() {
        assert_eq!(join(&["lib/", "PaxHeaders.0", ""]), "lib/PaxHeaders.0");
        assert_eq!(join(&["", "PaxHeaders.0", "boot"]), "PaxHeaders.0/boot");
        assert_eq!(join(&["a/b/", "PaxHeaders.0", "c"]), "a/b/PaxHeaders.0/c");
        assert_eq!(join(&["./", "PaxHeaders.0", "x"]), "PaxHeaders.0/x");
        assert_eq!(join(&["", ""]), "");
        assert_eq!(join(&["etc", ""]), "etc");
    }

    #[test]
    fn split_parent_base_ancestors() {
        assert_eq!(split("a/b/c"), ("a/b/", "c"));
        assert_eq!(split("lib/"), ("lib/", ""));
        assert_eq!(split("x"), ("", "x"));
        assert_eq!(parent("a/b"), "a");
        assert_eq!(parent("a"), ".");
        assert_eq!(parent("."), ".");
        assert_eq!(base("a/b"), "b");
        assert_eq!(base("."), ".");
        let all: Vec<&str> = ancestors("a/b/c").collect();
        assert_eq!(all, ["a/b", "a", "."]);
        assert_eq!(ancestors(".").count(), 0);
        assert_eq!(ancestors("x").collect::<Vec<_>>(), ["."]);
    }

    #[test]
    fn rel_matches_go() {
        for (base, target, expected) in [
            ("bin", "bin/hello", Some("hello")),
            ("a/b", "a/c/d", Some("../c/d")),
            (".", "x/y", Some("x/y")),
            ("a/b/c", "x", Some("../../../x")),
            ("a", "a", Some(".")),
            ("/a", "b", None),
            ("..", "a", None),
            ("a", "../b", Some("../../b")),
            (
                "containers/onboot/000-hello/lower/bin",
                "containers/onboot/000-hello/lower/bin/hello",
                Some("hello"),
            ),
        ] {
            assert_eq!(rel(base, target).as_deref(), expected, "{base} -> {target}");
        }
    }
}
