//! Tasks: follow-ups staff set themselves on an account, kept on its timeline. A task is
//! a `task.created` event whose `status` attribute goes from `open` to `done`; finishing
//! it also writes a `task.done` event, so the timeline shows when it was done and by
//! whom.

use crate::timeline::{internal_event, one_line_title};
use crate::{Result, Store};
use chrono::{DateTime, NaiveDate, Utc};
use rapport_core::permission::Authority;
use rapport_core::timeline::{AttributeValue, EventKind, INTERNAL_CONNECTOR, TimelineEvent};
use rapport_core::{AccountId, DomainError, EventId, StaffId};

/// The attribute that says whether a task is `open` or `done`.
pub const TASK_STATUS: &str = "status";
/// The attribute with a task's due date (`YYYY-MM-DD`).
pub const TASK_DUE: &str = "due";
/// The attribute with the staff id a task is for.
pub const TASK_ASSIGNEE: &str = "assignee";

/// A new task.
#[derive(Debug, Clone)]
pub struct NewTask {
    /// What is to be done (first line is the title).
    pub text: String,
    /// When it is due.
    pub due: Option<NaiveDate>,
    /// Who is to do it (the author when absent).
    pub assignee: Option<StaffId>,
}

impl Store {
    /// Writes an open task by `author` on `account`'s timeline.
    pub async fn add_task(
        &self,
        authority: Authority<'_>,
        account: AccountId,
        author: StaffId,
        task: NewTask,
        at: DateTime<Utc>,
    ) -> Result<TimelineEvent> {
        let text = task.text.trim();
        if text.is_empty() {
            return Err(DomainError::InvalidField {
                field: "task",
                reason: "must not be empty: say what is to be done".into(),
            }
            .into());
        }
        if let Some(due) = task.due {
            rapport_core::account::validate_date("due", due)?;
        }
        let author_record = self.active_author(author).await?;
        let assignee = match task.assignee {
            Some(assignee) => {
                let assignee = self.active_author(assignee).await?.id;
                if !self.can_see(assignee, account, at).await? {
                    return Err(DomainError::TaskAssigneeCannotSee {
                        staff: assignee,
                        account,
                    }
                    .into());
                }
                assignee
            }
            None => author,
        };
        let mut event = internal_event(
            EventKind::TASK_CREATED,
            "task",
            account,
            &author_record,
            at,
            one_line_title(text),
        )?;
        event.summary = text.to_owned();
        event
            .attributes
            .insert(TASK_STATUS.into(), AttributeValue::Text("open".into()));
        event
            .attributes
            .insert(TASK_ASSIGNEE.into(), AttributeValue::Integer(assignee.0));
        if let Some(due) = task.due {
            event
                .attributes
                .insert(TASK_DUE.into(), AttributeValue::Text(due.to_string()));
        }
        self.write_internal(authority, event, at).await
    }

    /// Marks the task `task` done as `by`: the task event's status becomes `done` and a
    /// `task.done` event is written on the same account. Returns the `task.done` event.
    pub async fn complete_task(
        &self,
        authority: Authority<'_>,
        task: EventId,
        by: StaffId,
        at: DateTime<Utc>,
    ) -> Result<TimelineEvent> {
        let stored = self
            .event(task, crate::Reader::Operator)
            .await?
            .ok_or(DomainError::UnknownEvent(task))?;
        let mut event = stored.event;
        if event.key.connector != INTERNAL_CONNECTOR
            || event.kind.as_str() != EventKind::TASK_CREATED
        {
            return Err(DomainError::EventNotChangeable {
                event: task,
                reason: format!("it is a `{}` event, not a task", event.kind),
            }
            .into());
        }
        if matches!(event.attributes.get(TASK_STATUS), Some(AttributeValue::Text(status)) if status == "done")
        {
            return Err(DomainError::EventNotChangeable {
                event: task,
                reason: "the task is already done".into(),
            }
            .into());
        }
        let Some(placement) = event.placement.clone() else {
            return Err(crate::Error::Corrupt(format!(
                "task {task} is on no account"
            )));
        };
        let finisher = self.active_author(by).await?;
        event.source_version += 1;
        event
            .attributes
            .insert(TASK_STATUS.into(), AttributeValue::Text("done".into()));
        event
            .attributes
            .insert("done_at".into(), AttributeValue::Timestamp(at));
        event
            .attributes
            .insert("done_by".into(), AttributeValue::Integer(by.0));
        let mut done = internal_event(
            EventKind::TASK_DONE,
            "task-done",
            placement.account,
            &finisher,
            at,
            one_line_title(&format!("Done: {}", event.title)),
        )?;
        done.attributes
            .insert("task".into(), AttributeValue::Integer(task.0));
        // One batch, one transaction: the task is never done without its `task.done`.
        let (_, outcomes) = self
            .write_batch(authority, &[event, done.clone()], at, None)
            .await?;
        match outcomes[1] {
            crate::UpsertOutcome::Inserted(id) => Ok(TimelineEvent {
                id,
                ingested_at: at,
                event: done,
                match_candidates: Vec::new(),
                unreadable: None,
                capture: None,
                withheld: false,
            }),
            _ => Err(crate::Error::Conflict(format!("task {task}"))),
        }
    }
}
