"""Prompt layout of the Q&A model: the chat-template token ids of the shared prefix, the question turns (with their
situated-token placeholders) and the labelled answers. ``ChorusQAModel`` inherits these methods; they read its
``config``, ``tokenizer``, ``scene_token_id``, ``end_of_turn_id`` and ``pad_token_id``.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from .scene_placeholders import SCENE_TOKEN

IGNORE_INDEX = -100


def user_turn_text(question: str, situation: str | None = None, ego_slots: int = 0) -> str:
    """The user turn of a question: the SQA3D situation (if any) goes before the question, followed by
    ``ego_slots`` placeholders for the situated tokens (``chorus_qa.situated``)."""
    lead = f"{situation.strip()} " if situation else ""
    return f"{lead}{SCENE_TOKEN * ego_slots} {question}" if ego_slots else f"{lead}{question}"


class PromptBuilder:
    """Token ids of prompts and answers (mixed into ``ChorusQAModel``)."""

    _prefix_cache: dict[bool, list[int]]

    def _render(self, messages, add_generation_prompt=False) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)

    def _system_message(self, blind: bool) -> dict:
        text = self.config.system_prompt
        if not blind:
            text = text + "\n" + SCENE_TOKEN * self.config.num_placeholders
        return {"role": "system", "content": text}

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def prefix_ids(self, blind: bool = False) -> list[int]:
        """Token ids of the shared prefix (system prompt + K placeholders unless blind)."""
        if blind not in self._prefix_cache:
            ids = self._encode(self._render([self._system_message(blind)]))
            expected = 0 if blind else self.config.num_placeholders
            found = ids.count(self.scene_token_id)
            if found != expected:
                raise ValueError(f"the rendered prefix has {found} {SCENE_TOKEN} tokens, expected {expected}: "
                                 f"the tokenizer splits or merges the placeholder")
            self._prefix_cache[blind] = ids
        return self._prefix_cache[blind]

    def question_ids(self, question: str, situation: str | None = None, ego_slots: int = 0) -> list[int]:
        """Token ids of the user turn + assistant header that follow the prefix."""
        user = user_turn_text(question, situation, ego_slots)
        system = self._system_message(blind=True)
        head = self._render([system])
        full = self._render([system, {"role": "user", "content": user}], add_generation_prompt=True)
        if not full.startswith(head):
            raise ValueError("the chat template does not render the system turn as a prefix of the conversation; "
                             "ChorusQAModel needs a template where it does (ChatML does)")
        return self._encode(full[len(head):])

    def answer_ids(self, answer: str) -> list[int]:
        """Token ids of the answer followed by the end-of-turn token."""
        return self._encode(answer.strip()) + [self.end_of_turn_id]

    def follow_up_ids(self, history: Sequence[tuple[str, str]], question: str, situation: str | None = None,
                      ego_slots: int = 0) -> list[int]:
        """Token ids that follow ``prefix + question_ids(q1) + answer_ids(a1) + ...`` for the next user turn.

        ``history`` holds the (user text, answer) pairs already in the sequence; the ids are whatever the chat
        template renders between the previous end-of-turn token and the next assistant header.
        """
        system = self._system_message(blind=True)
        messages = [system]
        for user, answer in history:
            messages += [{"role": "user", "content": user}, {"role": "assistant", "content": answer.strip()}]
        done = self._render(messages)
        end = self.tokenizer.convert_ids_to_tokens(self.end_of_turn_id)
        cut = done.rfind(end)
        if cut < 0:
            raise ValueError(f"the chat template does not end an assistant turn with {end!r}: cannot pack follow-up questions")
        user = user_turn_text(question, situation, ego_slots)
        full = self._render(messages + [{"role": "user", "content": user}], add_generation_prompt=True)
        head = done[: cut + len(end)]
        if not full.startswith(head):
            raise ValueError("the chat template re-renders earlier turns when a turn is added; cannot pack follow-up questions")
        return self._encode(full[len(head):])

    def build_token_ids(self, questions: Sequence[str], answers: Sequence[str], situations=None, blind: bool = False,
                        turns: Sequence[int] | None = None, ego_counts: Sequence[int] | None = None) -> tuple[Tensor, Tensor]:
        """Right-padded (input_ids [B, T], labels [B, T]); labels are IGNORE_INDEX except on the answer tokens.

        ``turns`` packs consecutive questions into one multi-turn sequence per row (default: one per row);
        ``ego_counts`` (one per question) is how many situated-token placeholders each question's turn gets.
        """
        situations = situations or [None] * len(questions)
        egos = list(ego_counts) if ego_counts is not None else [0] * len(questions)
        if len(egos) != len(questions) or (blind and any(egos)):
            raise ValueError(f"ego_counts {egos} must give one count per question (all 0 when blind)")
        turns = list(turns) if turns is not None else [1] * len(questions)
        if sum(turns) != len(questions) or min(turns, default=1) < 1:
            raise ValueError(f"turns {turns} must be positive and sum to the number of questions ({len(questions)})")
        prefix = self.prefix_ids(blind)
        rows, label_rows, q = [], [], 0
        for n in turns:
            row, labels, history = list(prefix), [IGNORE_INDEX] * len(prefix), []
            for question, answer, situation, ego in zip(questions[q:q + n], answers[q:q + n], situations[q:q + n],
                                                        egos[q:q + n], strict=True):
                context = (self.follow_up_ids(history, question, situation, ego) if history
                           else self.question_ids(question, situation, ego))
                target = self.answer_ids(answer)
                row += context + target
                labels += [IGNORE_INDEX] * len(context) + target
                history.append((user_turn_text(question, situation, ego), answer))
            rows.append(row)
            label_rows.append(labels)
            q += n
        width = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
        for i, (r, l) in enumerate(zip(rows, label_rows)):
            input_ids[i, : len(r)] = torch.tensor(r)
            labels[i, : len(l)] = torch.tensor(l)
        return input_ids, labels
