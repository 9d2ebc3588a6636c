//! The REST API's view of the media side: room settings live in the [`Placement`] registry;
//! anything about participants goes to the worker that owns the room as a [`Command`] with a
//! one-shot reply.

use std::time::Instant;

use tokio::sync::oneshot;

use signal::protocol::{ErrorCode, ParticipantInfo, SignalError, TrackInfo};
use signal::rest::dto::{CreateRoom, RoomInfo, UpdateParticipant, UpdateRoom};
use signal::webhook::{EventKind, WebhookEvent};
use signal::RoomService;

use super::handle::{busy, Command, Placement, SfuHandle};
use crate::core::LeaveReason;

fn no_participant() -> SignalError {
    SignalError::new(ErrorCode::NotFound, "no such participant in this room")
}

impl SfuHandle {
    /// Sends `make(reply)` to `worker` and waits for the answer.
    async fn ask<T>(
        &self,
        worker: usize,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, SignalError> {
        let (tx, rx) = oneshot::channel();
        self.workers[worker]
            .try_send(make(tx))
            .map_err(|_| busy())?;
        rx.await.map_err(|_| busy())
    }

    /// The worker of participant `id` in `room`: `not_found` for a missing room or participant.
    fn participant_worker(&self, room: &str, id: &str) -> Result<usize, SignalError> {
        let p = self.placement.lock();
        p.room_worker(room)?;
        p.worker_in_room(id, room).ok_or_else(no_participant)
    }

    fn lock(&self) -> parking_lot::MutexGuard<'_, Placement> {
        self.placement.lock()
    }
}

impl RoomService for SfuHandle {
    async fn create_room(&self, req: CreateRoom) -> Result<RoomInfo, SignalError> {
        let info = self.lock().create(&req, Instant::now())?;
        tracing::info!(room = %info.name, "room created");
        self.webhooks
            .emit(WebhookEvent::new(EventKind::RoomStarted, &info.name));
        Ok(info)
    }

    async fn list_rooms(&self) -> Result<Vec<RoomInfo>, SignalError> {
        Ok(self.lock().list())
    }

    async fn get_room(&self, room: String) -> Result<RoomInfo, SignalError> {
        self.lock().info(&room)
    }

    async fn update_room(&self, room: String, req: UpdateRoom) -> Result<RoomInfo, SignalError> {
        let update = self.lock().update(&room, &req)?;
        if let Some(codecs) = &update.video_codecs {
            tracing::info!(room = %room, video_codecs = ?codecs.names(), "room video codecs changed");
        }
        let changed = update.metadata.is_some() || update.video_codecs.is_some();
        if changed {
            for worker in update.workers {
                let cmd = Command::UpdateRoom {
                    room: room.clone(),
                    metadata: update.metadata.clone(),
                    video_codecs: update.video_codecs.clone(),
                };
                // A policy that does not reach the worker now reaches it with the next join.
                if self.workers[worker].try_send(cmd).is_err() {
                    tracing::warn!(room = %update.info.name, "room update not sent: worker busy");
                }
            }
        }
        Ok(update.info)
    }

    async fn delete_room(&self, room: String) -> Result<(), SignalError> {
        let (done, relayed) = {
            let mut p = self.lock();
            let relayed = p.is_relayed(&room);
            let mut done = Vec::new();
            for worker in p.room_workers(&room)? {
                let (tx, rx) = oneshot::channel();
                let cmd = Command::CloseRoom {
                    room: room.clone(),
                    reason: LeaveReason::RoomDeleted,
                    reply: tx,
                };
                self.workers[worker].try_send(cmd).map_err(|_| busy())?;
                done.push(rx);
            }
            p.remove(&room);
            (done, relayed)
        };
        for done in done {
            // The participants' `participant_left` webhooks go out before `room_finished`.
            let _ = done.await;
        }
        tracing::info!(room = %room, "room deleted");
        // A relayed part: the owner, which the deletion reaches too, tells the room finished.
        if !relayed {
            self.webhooks
                .emit(WebhookEvent::new(EventKind::RoomFinished, &room).reason("deleted"));
        }
        Ok(())
    }

    async fn list_participants(&self, room: String) -> Result<Vec<ParticipantInfo>, SignalError> {
        let Some(worker) = self.lock().room_worker(&room)? else {
            return Ok(Vec::new());
        };
        self.ask(worker, |reply| Command::ListParticipants { room, reply })
            .await
    }

    async fn remove_participant(&self, room: String, id: String) -> Result<(), SignalError> {
        let worker = self.participant_worker(&room, &id)?;
        self.ask(worker, |reply| Command::RemoveParticipant {
            id,
            reason: LeaveReason::Removed,
            reply,
        })
        .await?
    }

    async fn update_participant(
        &self,
        room: String,
        id: String,
        req: UpdateParticipant,
    ) -> Result<ParticipantInfo, SignalError> {
        let worker = self.participant_worker(&room, &id)?;
        self.ask(worker, |reply| Command::UpdateParticipant {
            id,
            name: req.name,
            metadata: req.metadata,
            reply,
        })
        .await?
    }

    async fn mute_track(
        &self,
        room: String,
        id: String,
        track: String,
        muted: bool,
    ) -> Result<TrackInfo, SignalError> {
        let worker = self.participant_worker(&room, &id)?;
        self.ask(worker, |reply| Command::MuteTrack {
            id,
            track_id: track,
            muted,
            reply,
        })
        .await?
    }
}
