//! A small argument cursor: positionals, `--opt VALUE` / `--opt=VALUE`,
//! flags, and everything after `--`.

pub struct Args {
    items: Vec<String>,
    rest: Vec<String>,
}

impl Args {
    pub fn new(mut items: Vec<String>) -> Self {
        let rest = match items.iter().position(|a| a == "--") {
            Some(i) => {
                let r = items.split_off(i + 1);
                items.pop();
                r
            }
            None => Vec::new(),
        };
        Self { items, rest }
    }

    /// Removes and returns `--name VALUE` or `--name=VALUE`.
    pub fn option(&mut self, name: &str) -> Result<Option<String>, String> {
        let prefix = format!("{name}=");
        if let Some(i) = self.items.iter().position(|a| a.starts_with(&prefix)) {
            return Ok(Some(self.items.remove(i)[prefix.len()..].to_string()));
        }
        match self.items.iter().position(|a| a == name) {
            Some(i) if i + 1 < self.items.len() => {
                self.items.remove(i);
                Ok(Some(self.items.remove(i)))
            }
            Some(_) => Err(format!("{name} needs a value")),
            None => Ok(None),
        }
    }

    /// Every occurrence of a repeatable option.
    pub fn options(&mut self, name: &str) -> Result<Vec<String>, String> {
        let mut v = Vec::new();
        while let Some(x) = self.option(name)? {
            v.push(x);
        }
        Ok(v)
    }

    /// Removes a flag; true if it was there.
    pub fn flag(&mut self, name: &str) -> bool {
        match self.items.iter().position(|a| a == name) {
            Some(i) => {
                self.items.remove(i);
                true
            }
            None => false,
        }
    }

    /// The next positional argument, required.
    pub fn positional(&mut self, what: &str) -> Result<String, String> {
        self.maybe_positional().ok_or(format!("missing {what}"))
    }

    /// The next positional argument, if any.
    pub fn maybe_positional(&mut self) -> Option<String> {
        let i = self.items.iter().position(|a| !a.starts_with('-'))?;
        Some(self.items.remove(i))
    }

    /// Everything after `--`.
    pub fn rest(&mut self) -> Vec<String> {
        std::mem::take(&mut self.rest)
    }

    /// Fails on anything left over.
    pub fn done(&self) -> Result<(), String> {
        match self.items.first() {
            Some(a) => Err(format!("unexpected argument {a:?}")),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn cursor() {
        let mut a = Args::new(v(&[
            "web",
            "--rootfs",
            "/r",
            "--pause",
            "--annotation=a=b",
            "--annotation",
            "c=d",
            "--",
            "sh",
            "-c",
            "x",
        ]));
        assert_eq!(a.option("--rootfs").unwrap().as_deref(), Some("/r"));
        assert!(a.flag("--pause"));
        assert_eq!(a.options("--annotation").unwrap(), v(&["a=b", "c=d"]));
        assert_eq!(a.positional("id").unwrap(), "web");
        assert_eq!(a.rest(), v(&["sh", "-c", "x"]));
        assert!(a.done().is_ok());
        let mut b = Args::new(v(&["--timeout"]));
        assert!(b.option("--timeout").is_err());
        assert!(Args::new(v(&["x"])).done().is_err());
    }
}
