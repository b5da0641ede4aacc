//! Azure connection strings:
//! `Endpoint=sb://host:port/;SharedAccessKeyName=…;SharedAccessKey=…;EntityPath=…`.

use thiserror::Error;

/// A parsed connection string. Key names are case-insensitive; values may contain `=`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectionString {
    /// Host name from `Endpoint`.
    pub host: String,
    /// Port from `Endpoint`, if given.
    pub port: Option<u16>,
    /// Scheme of `Endpoint` (`sb` normally).
    pub scheme: String,
    /// `SharedAccessKeyName`.
    pub key_name: Option<String>,
    /// `SharedAccessKey`.
    pub key: Option<String>,
    /// `SharedAccessSignature` (a ready token).
    pub signature: Option<String>,
    /// `EntityPath`.
    pub entity_path: Option<String>,
}

/// A connection string that cannot be used.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionStringError {
    /// No `Endpoint=` part.
    #[error("the connection string has no Endpoint=sb://host[:port]/ part")]
    MissingEndpoint,
    /// The endpoint is not `scheme://host[:port][/]`.
    #[error("Endpoint '{0}' is not of the form sb://host[:port]/")]
    BadEndpoint(String),
    /// A part without `=`.
    #[error("'{0}' is not a Key=Value part")]
    BadPart(String),
    /// A key name without key (or the other way round).
    #[error("SharedAccessKeyName and SharedAccessKey must be given together")]
    IncompleteKey,
}

impl ConnectionString {
    /// Parses a connection string.
    pub fn parse(s: &str) -> Result<ConnectionString, ConnectionStringError> {
        let mut cs = ConnectionString::default();
        let mut endpoint = None;
        for part in s.split(';') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| ConnectionStringError::BadPart(part.chars().take(40).collect()))?;
            let v = v.trim().to_string();
            match k.trim().to_ascii_lowercase().as_str() {
                "endpoint" => endpoint = Some(v),
                "sharedaccesskeyname" => cs.key_name = Some(v),
                "sharedaccesskey" => cs.key = Some(v),
                "sharedaccesssignature" => cs.signature = Some(v),
                "entitypath" => cs.entity_path = Some(v),
                _ => {}
            }
        }
        let ep = endpoint.ok_or(ConnectionStringError::MissingEndpoint)?;
        let (scheme, rest) = ep
            .split_once("://")
            .ok_or_else(|| ConnectionStringError::BadEndpoint(ep.clone()))?;
        let authority = rest.split('/').next().unwrap_or("");
        if authority.is_empty() {
            return Err(ConnectionStringError::BadEndpoint(ep.clone()));
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => match p.parse() {
                Ok(p) => (h.to_string(), Some(p)),
                Err(_) => return Err(ConnectionStringError::BadEndpoint(ep.clone())),
            },
            _ => (authority.to_string(), None),
        };
        cs.scheme = scheme.to_ascii_lowercase();
        cs.host = host;
        cs.port = port;
        if cs.key_name.is_some() != cs.key.is_some() {
            return Err(ConnectionStringError::IncompleteKey);
        }
        Ok(cs)
    }

    /// `host[:port]`.
    pub fn authority(&self) -> String {
        match self.port {
            Some(p) => format!("{}:{p}", self.host),
            None => self.host.clone(),
        }
    }

    /// Formats the connection string back (Azure's key order).
    pub fn to_string_with(&self, entity: Option<&str>) -> String {
        let mut s = format!("Endpoint={}://{}/", self.scheme, self.authority());
        if let (Some(n), Some(k)) = (&self.key_name, &self.key) {
            s.push_str(&format!(";SharedAccessKeyName={n};SharedAccessKey={k}"));
        }
        if let Some(sig) = &self.signature {
            s.push_str(&format!(";SharedAccessSignature={sig}"));
        }
        if let Some(e) = entity.or(self.entity_path.as_deref()) {
            s.push_str(&format!(";EntityPath={e}"));
        }
        s
    }
}

impl std::fmt::Display for ConnectionString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_string_with(None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_full() {
        let cs = ConnectionString::parse(
            "Endpoint=sb://127.0.0.1:9080/;SharedAccessKeyName=Root;SharedAccessKey=abc=;EntityPath=hc",
        )
        .unwrap();
        assert_eq!(cs.host, "127.0.0.1");
        assert_eq!(cs.port, Some(9080));
        assert_eq!(cs.key.as_deref(), Some("abc="));
        assert_eq!(cs.entity_path.as_deref(), Some("hc"));
        assert_eq!(
            cs.to_string(),
            "Endpoint=sb://127.0.0.1:9080/;SharedAccessKeyName=Root;SharedAccessKey=abc=;EntityPath=hc"
        );
    }

    #[test]
    fn parse_errors() {
        assert_eq!(
            ConnectionString::parse("SharedAccessKey=x"),
            Err(ConnectionStringError::MissingEndpoint)
        );
        assert!(matches!(
            ConnectionString::parse("Endpoint=nope"),
            Err(ConnectionStringError::BadEndpoint(_))
        ));
        assert!(matches!(
            ConnectionString::parse("Endpoint=sb://h:xx/"),
            Err(ConnectionStringError::BadEndpoint(_))
        ));
        assert_eq!(
            ConnectionString::parse("Endpoint=sb://h/;SharedAccessKey=x"),
            Err(ConnectionStringError::IncompleteKey)
        );
        let cs = ConnectionString::parse("endpoint=sb://ns.servicebus.windows.net").unwrap();
        assert_eq!(cs.port, None);
    }
}
