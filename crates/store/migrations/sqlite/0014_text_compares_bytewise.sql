-- Text compared byte by byte (issue 3 speed), SQLite flavour. Keep in step
-- with ../postgres/0014_text_compares_bytewise.sql.
--
-- SQLite compares text with its BINARY collation unless a column says
-- otherwise, and none does: nothing to change. The file keeps both
-- databases' migration histories in step.
SELECT 1;
