"""The source notebook as stored in git: no outputs, and the structure nbgrader needs."""

from grader.course import exercises, nbgrader_meta, read_source


def test_stored_without_outputs():
    nb = read_source()
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"cell {index} has outputs"


def test_points_add_up_to_what_the_notebook_says():
    points = {ex: sum(p for _, p in cells) for ex, cells in exercises().items()}
    assert points == {"conv_block": 30, "upsampling_block": 30, "unet_model": 40}
    intro = read_source().cells[0].source
    for exercise, total in points.items():
        assert f"`{exercise}`" in intro and f"| {total:g} |" in intro


def test_every_graded_cell_is_locked_and_hides_its_test():
    for cell in read_source().cells:
        meta = nbgrader_meta(cell)
        if meta.get("grade"):
            assert meta["locked"] and "### BEGIN HIDDEN TESTS" in cell.source
        if meta.get("solution"):
            assert "### BEGIN SOLUTION" in cell.source and "### END SOLUTION" in cell.source


def test_grade_ids_are_unique():
    ids = [nbgrader_meta(c)["grade_id"] for c in read_source().cells if nbgrader_meta(c)]
    assert len(ids) == len(set(ids))
