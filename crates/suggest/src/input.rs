//! What a suggestion is asked for: free text plus optional structured fields
//! of an alert or incident.

use serde::{Deserialize, Serialize};

/// One field of a [`SuggestInput`], named in evidence so an analyst sees
/// which part of the alert supports a suggestion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputField {
    /// Free text (pasted text, a whole alert rendered as text).
    Text,
    /// Alert or incident title.
    Title,
    /// Alert or incident description.
    Description,
    /// Process command line.
    CommandLine,
    /// Process image name or path.
    ProcessName,
    /// Parent process image name or path.
    ParentProcess,
    /// Event ID (Windows Security, Sysmon, ...).
    EventId,
    /// Registry key or value path.
    RegistryPath,
    /// Analyst notes.
    AnalystNotes,
}

impl InputField {
    /// How much one occurrence of a term in this field counts. The parent
    /// process is context rather than the activity itself: an alert about
    /// `rundll32.exe` started from `cmd.exe` is about rundll32, so the parent
    /// counts half.
    pub fn weight(self) -> f32 {
        match self {
            InputField::ParentProcess => 0.5,
            _ => 1.0,
        }
    }

    /// Structured fields come from telemetry rather than prose: a match there
    /// is field evidence, which lifts the weak-evidence cap (see
    /// [`crate::Suggester`]).
    pub fn is_structured(self) -> bool {
        matches!(
            self,
            InputField::CommandLine
                | InputField::ProcessName
                | InputField::ParentProcess
                | InputField::EventId
                | InputField::RegistryPath
        )
    }
}

/// Text and fields to suggest techniques for. Every field is optional; an
/// input with nothing in it gets no suggestion.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SuggestInput {
    /// Free text.
    pub text: String,
    /// Alert or incident title.
    pub title: Option<String>,
    /// Alert or incident description.
    pub description: Option<String>,
    /// Process command line.
    pub command_line: Option<String>,
    /// Process image name or path.
    pub process_name: Option<String>,
    /// Parent process image name or path.
    pub parent_process: Option<String>,
    /// Event ID as logged (`4698`, `1`).
    pub event_id: Option<String>,
    /// Registry key or value path.
    pub registry_path: Option<String>,
    /// Analyst notes.
    pub analyst_notes: Option<String>,
}

impl SuggestInput {
    /// An input made of free text only.
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            ..Self::default()
        }
    }

    /// Free text from raw bytes, such as a file or a request body of unknown
    /// encoding: invalid UTF-8 is replaced, never refused.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        Self::text(String::from_utf8_lossy(bytes).into_owned())
    }

    /// The non-empty fields, in a fixed order, each with the text the model
    /// reads. An event ID is expanded with the words of its well-known
    /// meaning (see [`event_id_words`]), since ATT&CK prose names the event
    /// ("scheduled task created") far more often than its number.
    pub fn fields(&self) -> Vec<(InputField, String)> {
        let optional = [
            (InputField::Title, &self.title),
            (InputField::Description, &self.description),
            (InputField::CommandLine, &self.command_line),
            (InputField::ProcessName, &self.process_name),
            (InputField::ParentProcess, &self.parent_process),
            (InputField::EventId, &self.event_id),
            (InputField::RegistryPath, &self.registry_path),
            (InputField::AnalystNotes, &self.analyst_notes),
        ];
        let mut out = Vec::new();
        if !self.text.trim().is_empty() {
            out.push((InputField::Text, self.text.clone()));
        }
        for (field, value) in optional {
            let Some(value) = value.as_deref().map(str::trim).filter(|v| !v.is_empty()) else {
                continue;
            };
            let value = match field {
                InputField::EventId => match event_id_words(value) {
                    Some(words) => format!("{value} {words}"),
                    None => value.to_string(),
                },
                // The image's folders (`C:\Windows\System32`) are the same
                // for most processes; the file name says what ran.
                InputField::ProcessName | InputField::ParentProcess => file_name(value).to_string(),
                _ => value.to_string(),
            };
            out.push((field, value));
        }
        out
    }
}

/// The last segment of a Windows or POSIX path (`cmd.exe` of
/// `C:\Windows\System32\cmd.exe`), the whole value when it has no separator.
fn file_name(path: &str) -> &str {
    path.rsplit(['\\', '/'])
        .find(|s| !s.trim().is_empty())
        .unwrap_or(path)
}

/// Words describing a well-known Windows event ID: Security and System log
/// IDs (four digits) and Sysmon operational IDs (1 to 26, which the Security
/// log does not use). `None` for an ID this table does not know.
///
/// This is telemetry vocabulary, not ATT&CK knowledge: it says what the
/// event records and lets the learned model decide which technique that is.
pub fn event_id_words(event_id: &str) -> Option<&'static str> {
    let id: u32 = event_id.trim().parse().ok()?;
    let words = match id {
        1 => "process creation created command line",
        2 => "file creation time changed",
        3 => "network connection",
        5 => "process terminated",
        6 => "driver loaded",
        7 => "image loaded dll module load",
        8 => "create remote thread",
        9 => "raw access read disk",
        10 => "process access opened",
        11 => "file created",
        12..=14 => "registry key value modified",
        15 => "file stream created alternate data stream",
        17 | 18 => "named pipe created connected",
        19..=21 => "wmi event subscription consumer filter",
        22 => "dns query",
        23 | 26 => "file deleted",
        25 => "process tampering image replaced",
        1102 => "audit log cleared event log",
        4104 => "powershell script block logging",
        4624 => "account logon",
        4625 => "failed logon",
        4648 => "logon explicit credentials",
        4657 => "registry value modified",
        4662 => "directory service object access",
        4672 => "special privileges assigned logon",
        4688 => "process creation created command line",
        4697 | 7045 => "service installed created",
        4698 => "scheduled task created",
        4699 => "scheduled task deleted",
        4702 => "scheduled task updated",
        4719 => "audit policy changed",
        4720 => "user account created",
        4726 => "user account deleted",
        4728 | 4732 | 4756 => "member added security group",
        4738 => "user account changed",
        4768 => "kerberos authentication ticket tgt requested",
        4769 => "kerberos service ticket requested",
        4771 => "kerberos pre authentication failed",
        4776 => "credential validation ntlm",
        5136 => "directory service object modified",
        5140 | 5145 => "network share accessed smb",
        5156 => "network connection allowed",
        7040 => "service start type changed",
        _ => return None,
    };
    Some(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_skip_blank_values_and_expand_event_ids() {
        let input = SuggestInput {
            text: "  ".into(),
            title: Some("New task".into()),
            event_id: Some("4698".into()),
            analyst_notes: Some(" ".into()),
            ..SuggestInput::default()
        };
        let fields = input.fields();
        assert_eq!(
            fields,
            [
                (InputField::Title, "New task".to_string()),
                (
                    InputField::EventId,
                    "4698 scheduled task created".to_string()
                ),
            ]
        );
    }

    #[test]
    fn process_fields_keep_the_file_name() {
        let input = SuggestInput {
            process_name: Some(r"C:\Windows\System32\schtasks.exe".into()),
            parent_process: Some("/usr/bin/bash".into()),
            ..SuggestInput::default()
        };
        assert_eq!(
            input.fields(),
            [
                (InputField::ProcessName, "schtasks.exe".to_string()),
                (InputField::ParentProcess, "bash".to_string()),
            ]
        );
        assert_eq!(file_name("cmd.exe"), "cmd.exe");
        assert_eq!(file_name(r"C:\dir\"), "dir");
    }

    #[test]
    fn unknown_event_ids_are_kept_verbatim() {
        assert_eq!(event_id_words("99999"), None);
        assert_eq!(event_id_words("not a number"), None);
        let input = SuggestInput {
            event_id: Some("31337".into()),
            ..SuggestInput::default()
        };
        assert_eq!(input.fields(), [(InputField::EventId, "31337".to_string())]);
    }

    #[test]
    fn from_bytes_replaces_invalid_utf8() {
        let input = SuggestInput::from_bytes(&[b'o', b'k', 0xff, 0xfe]);
        assert_eq!(input.text, "ok\u{fffd}\u{fffd}");
    }

    #[test]
    fn structured_fields_are_telemetry_fields() {
        assert!(InputField::CommandLine.is_structured());
        assert!(InputField::EventId.is_structured());
        assert!(!InputField::Title.is_structured());
        assert!(!InputField::Text.is_structured());
    }
}
