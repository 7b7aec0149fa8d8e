// "My timetable": a Mon–Fri grid from 08:00 to 20:00 in half-hour rows, and the
// same subjects as a list (shown instead of the grid on small screens).
import { h } from './api.js';

export const DAYS = ['Mon', 'Tue', 'Wed', 'Thu', 'Fri'];
export const DAY_NAMES = { Mon: 'Monday', Tue: 'Tuesday', Wed: 'Wednesday', Thu: 'Thursday', Fri: 'Friday' };
const FIRST_HOUR = 8;
const LAST_HOUR = 20;
const SLOT_MINUTES = 30;
const SLOTS = ((LAST_HOUR - FIRST_HOUR) * 60) / SLOT_MINUTES;

export function minutes(time) {
  const match = /^(\d{1,2}):(\d{2})$/.exec(String(time || ''));
  return match ? Number(match[1]) * 60 + Number(match[2]) : NaN;
}

export function whenText(subject) {
  return `${subject.day} ${subject.start}–${subject.end}`;
}

/** Subjects in week order: by day, then start time. */
export function byWeekOrder(a, b) {
  return DAYS.indexOf(a.day) - DAYS.indexOf(b.day) || minutes(a.start) - minutes(b.start) || a.code.localeCompare(b.code);
}

/** Grid rows (1-based, after the header row) for a subject, clamped to the grid. */
function rows(subject) {
  const start = minutes(subject.start);
  const end = minutes(subject.end);
  const first = Math.max(0, Math.min(SLOTS - 1, Math.floor((start - FIRST_HOUR * 60) / SLOT_MINUTES)));
  const last = Math.max(first + 1, Math.min(SLOTS, Math.ceil((end - FIRST_HOUR * 60) / SLOT_MINUTES)));
  return { from: first + 2, to: last + 2 };
}

export function renderGrid(grid, subjects, { highlight } = {}) {
  const parts = [h('div', { class: 'tt-corner', style: 'grid-row: 1; grid-column: 1' })];
  DAYS.forEach((day, index) => {
    parts.push(h('div', { class: 'tt-day', style: `grid-row: 1; grid-column: ${index + 2}`, title: DAY_NAMES[day] }, day));
  });
  for (let hour = FIRST_HOUR; hour < LAST_HOUR; hour += 1) {
    const row = (hour - FIRST_HOUR) * 2 + 2;
    parts.push(h('div', { class: `tt-hour${hour === FIRST_HOUR ? ' first' : ''}`, style: `grid-row: ${row} / span 2; grid-column: 1` }, `${String(hour).padStart(2, '0')}:00`));
    DAYS.forEach((_, index) => {
      parts.push(h('div', { class: `tt-cell${hour === FIRST_HOUR ? ' first' : ''}`, style: `grid-row: ${row} / span 2; grid-column: ${index + 2}` }));
    });
  }
  for (const subject of subjects) {
    const column = DAYS.indexOf(subject.day);
    if (column < 0) continue;
    const { from, to } = rows(subject);
    parts.push(
      h(
        'div',
        {
          class: `tt-event${subject.code === highlight ? ' is-new' : ''}`,
          style: `grid-row: ${from} / ${to}; grid-column: ${column + 2}`,
          title: `${subject.code} ${subject.title}, ${whenText(subject)}`,
          dataset: { code: subject.code, day: subject.day, start: subject.start, end: subject.end },
        },
        h('strong', {}, subject.code),
        h('span', { class: 'tt-event-title' }, subject.title),
        h('span', { class: 'tt-event-time' }, `${subject.start}–${subject.end}`),
      ),
    );
  }
  grid.replaceChildren(...parts);
}

export function renderList(list, subjects) {
  list.replaceChildren(
    ...subjects.map((subject) =>
      h(
        'li',
        { dataset: { code: subject.code } },
        h('span', { class: 'tt-list-when' }, subject.day, h('small', {}, `${subject.start}–${subject.end}`)),
        h('span', {}, h('span', { class: 'tt-list-code' }, subject.code), ' ', subject.title),
      ),
    ),
  );
}
